/*
 * The pg_hba line of a connection that authenticates with OAuth, read for
 * src/oauth/validator.rs. PostgreSQL's Port and HbaLine are laid out by its
 * build options (SSL, GSSAPI), so Rust does not mirror them: this file is
 * compiled against the server's own headers (build.rs), from PostgreSQL 18
 * on, and reads three fields.
 */
#include "postgres.h"

#include "libpq/hba.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"

static const HbaLine *
current_line(void)
{
	if (MyProcPort == NULL)
		return NULL;
	return MyProcPort->hba;
}

/* The line's issuer, or NULL. */
const char *
jwt_rls_hba_oauth_issuer(void)
{
	const HbaLine *line = current_line();

	return line ? line->oauth_issuer : NULL;
}

/* The line's scope (space-separated), or NULL. */
const char *
jwt_rls_hba_oauth_scope(void)
{
	const HbaLine *line = current_line();

	return line ? line->oauth_scope : NULL;
}

/* Whether the line delegates the role decision to the validator
 * (delegate_ident_mapping=1); true when there is no line, so that a caller
 * that cannot tell checks the role. */
bool
jwt_rls_hba_oauth_delegated(void)
{
	const HbaLine *line = current_line();

	return line ? line->oauth_skip_usermap : true;
}
