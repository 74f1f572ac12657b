//! The SQL contract, checked inside Postgres with `cargo pgrx test`: NULL
//! behaviour, volatility and parallel labels, SQLSTATEs, key validation.
//! Scenario tests through a real client live in tests/ (pytest).

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;
    use serde_json::Value;

    const TOKENS: &str = include_str!("../core/tests/vectors/tokens.json");
    const JWKS: &str = include_str!("../core/tests/vectors/keys.jwks.json");
    const HS256_SECRET_B64URL: &str =
        include_str!("../core/tests/vectors/keys.pem/hs256-5e7da2e2.b64url");
    const RS256_PEM: &str = include_str!("../core/tests/vectors/keys.pem/rs256-0fdfe147.pem");

    fn case(name: &str) -> Value {
        let all: Vec<Value> = serde_json::from_str(TOKENS).unwrap();
        all.into_iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no case {name}"))
    }

    fn token(name: &str) -> String {
        case(name)["token"].as_str().unwrap().to_string()
    }

    fn run(sql: &str) {
        Spi::run(sql).unwrap();
    }

    fn text(sql: &str) -> Option<String> {
        Spi::get_one::<String>(sql).unwrap()
    }

    /// The SQLSTATE `sql` fails with, or None when it succeeds.
    fn sqlstate(sql: &str) -> Option<String> {
        Spi::get_one_with_args::<String>("SELECT pg_temp.sqlstate_of($1)", &[sql.into()]).unwrap()
    }

    fn quote(s: &str) -> String {
        format!("'{}'", s.replace('\'', "''"))
    }

    fn setup() {
        run(
            "CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
             BEGIN EXECUTE q; RETURN NULL; EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE; END $$",
        );
        run("SET LOCAL jwt_rls.issuer = 'https://issuer.example'");
        run("SET LOCAL jwt_rls.audience = 'jwt-rls-tests'");
        run(&format!(
            "SELECT jwt_rls.import_jwks({}::jsonb)",
            quote(JWKS)
        ));
    }

    #[pg_test]
    fn no_token_reads_null() {
        assert_eq!(text("SELECT jwt_rls.jwt_claim('sub')"), None);
        assert_eq!(text("SELECT jwt_rls.jwt_claims()::text"), None);
        assert_eq!(text("SELECT jwt_rls.user_id()"), None);
        assert_eq!(text("SELECT jwt_rls.tenant_id()"), None);
        assert_eq!(text("SELECT jwt_rls.jwt_claim(NULL)"), None);
        assert_eq!(text("SELECT jwt_rls.authenticate(NULL)::text"), None);
    }

    #[pg_test]
    fn labels_in_pg_proc() {
        let labels =
            |f: &str| {
                text(&format!(
                "SELECT provolatile::text || proparallel::text || proisstrict::text FROM pg_proc
                 WHERE oid = 'jwt_rls.{f}'::{}",
                // An overloaded name needs its argument types.
                if f.contains('(') { "regprocedure" } else { "regproc" }
            ))
                .unwrap()
            };
        // STABLE and PARALLEL SAFE: claims are fixed within a statement and
        // parallel workers see the leader's token. STRICT where there are
        // arguments, so a NULL name or token is NULL, not an error.
        assert_eq!(labels("jwt_claim"), "sstrue");
        for reader in ["jwt_claims", "user_id", "tenant_id"] {
            assert!(labels(reader).starts_with("ss"), "{reader}");
        }
        // Binding sets a setting: VOLATILE and PARALLEL UNSAFE.
        assert_eq!(labels("authenticate(text)"), "vutrue");
        // With a DPoP proof: not STRICT, so a NULL proof is an error rather
        // than a NULL that binds nothing.
        assert_eq!(labels("authenticate(text, text, text, text)"), "vufalse");
        for admin in ["import_jwks", "disable_key", "enable_key", "remove_key"] {
            assert!(labels(admin).starts_with("vu"), "{admin}");
        }
    }

    #[pg_test]
    fn authenticate_binds_verified_claims() {
        setup();
        let t = token("HS256/valid/pyjwt");
        let claims = text(&format!("SELECT jwt_rls.authenticate({})::text", quote(&t))).unwrap();
        let claims: Value = serde_json::from_str(&claims).unwrap();
        assert_eq!(claims, case("HS256/valid/pyjwt")["claims"]);
        assert_eq!(
            text("SELECT jwt_rls.jwt_claim('tenant_id')"),
            claims["tenant_id"].as_str().map(String::from)
        );
        assert_eq!(
            text("SELECT jwt_rls.user_id()"),
            claims["sub"].as_str().map(String::from)
        );
        assert_eq!(
            text("SELECT jwt_rls.tenant_id()"),
            claims["tenant_id"].as_str().map(String::from)
        );
        assert_eq!(text("SELECT current_setting('jwt_rls.token')"), Some(t));
    }

    #[pg_test]
    fn claims_are_exact_jsonb() {
        setup();
        let c = case("HS256/valid/rich_claims");
        run(&format!(
            "SELECT jwt_rls.authenticate({})",
            quote(c["token"].as_str().unwrap())
        ));
        let same = Spi::get_one_with_args::<bool>(
            "SELECT jwt_rls.jwt_claims() = $1::jsonb",
            &[c["claims"].to_string().as_str().into()],
        )
        .unwrap();
        assert_eq!(same, Some(true));
        assert_eq!(
            text("SELECT jwt_rls.jwt_claim('u64_max')"),
            Some("18446744073709551615".into())
        );
        assert_eq!(
            text("SELECT jwt_rls.jwt_claim('org.roles.1')"),
            Some("viewer".into())
        );
        assert_eq!(text("SELECT jwt_rls.jwt_claim('manager_id')"), None);
    }

    #[pg_test]
    fn each_failure_has_its_sqlstate() {
        setup();
        let bad = |t: &str| sqlstate(&format!("SELECT jwt_rls.authenticate({})", quote(t)));
        assert_eq!(bad("garbage").as_deref(), Some("22023"));
        assert_eq!(
            bad(&format!("Bearer {}", token("HS256/valid/pyjwt"))).as_deref(),
            Some("22023")
        );
        assert_eq!(bad("").as_deref(), Some("22023"));
        assert_eq!(
            bad(&token("HS256/invalid/sig_bitflip")).as_deref(),
            Some("28000")
        );
        assert_eq!(
            bad(&token("none/invalid/alg_none")).as_deref(),
            Some("28000")
        );
        assert_eq!(
            bad(&token("HS256/invalid/expired")).as_deref(),
            Some("28000")
        );
        let set = |t: &str| sqlstate(&format!("SET LOCAL jwt_rls.token = {}", quote(t)));
        assert_eq!(set("garbage").as_deref(), Some("22023"));
        assert_eq!(
            set(&token("HS256/invalid/sig_bitflip")).as_deref(),
            Some("28000")
        );
        assert_eq!(set(&token("HS256/valid/pyjwt")), None);

        run("CREATE ROLE jwt_rls_test_app NOLOGIN");
        run("GRANT USAGE ON SCHEMA jwt_rls TO jwt_rls_test_app");
        run("SET LOCAL ROLE jwt_rls_test_app");
        assert_eq!(
            sqlstate("SELECT jwt_rls.import_jwks('{\"keys\":[]}')").as_deref(),
            Some("42501")
        );
        assert_eq!(
            sqlstate("SELECT jwt_rls.disable_key('x')").as_deref(),
            Some("42501")
        );
        assert_eq!(
            sqlstate("SELECT count(*) FROM jwt_rls.keys").as_deref(),
            Some("42501")
        );
        assert_eq!(
            sqlstate("SELECT count(*) FROM jwt_rls.key_list").as_deref(),
            Some("42501")
        );
        assert_eq!(
            sqlstate("SET jwt_rls.issuer = 'evil'").as_deref(),
            Some("42501")
        );
        assert_eq!(
            sqlstate("SET jwt_rls.leeway = 300").as_deref(),
            Some("42501")
        );
        // PostgreSQL 14 cannot reserve a prefix (MarkGUCPrefixReserved is
        // new in 15): an unknown name there becomes a placeholder, which
        // jwt_rls never reads (pinned per major, README "PostgreSQL 14").
        let unknown_name = if cfg!(feature = "pg14") {
            None
        } else {
            Some("42602")
        };
        assert_eq!(
            sqlstate("SET jwt_rls.made_up = 'x'").as_deref(),
            unknown_name
        );
        // The application role binds tokens and reads claims with USAGE alone.
        let t = token("HS256/valid/jwcrypto");
        assert_eq!(
            sqlstate(&format!("SELECT jwt_rls.authenticate({})", quote(&t))),
            None
        );
        run("RESET ROLE");
    }

    #[pg_test]
    fn errors_never_carry_the_token() {
        setup();
        let t = token("HS256/invalid/sig_bitflip");
        run("CREATE FUNCTION pg_temp.message_of(q text) RETURNS text LANGUAGE plpgsql AS $$
             DECLARE m text; d text; h text;
             BEGIN EXECUTE q; RETURN NULL;
             EXCEPTION WHEN OTHERS THEN
               GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
               RETURN concat_ws(' | ', m, d, h);
             END $$");
        let expired = token("HS256/invalid/expired");
        for (q, bad) in [
            (format!("SELECT jwt_rls.authenticate({})", quote(&t)), &t),
            (format!("SET LOCAL jwt_rls.token = {}", quote(&t)), &t),
            (
                format!("SELECT jwt_rls.authenticate({})", quote(&expired)),
                &expired,
            ),
            (
                format!("SET LOCAL jwt_rls.token = {}", quote(&expired)),
                &expired,
            ),
        ] {
            let m = Spi::get_one_with_args::<String>(
                "SELECT pg_temp.message_of($1)",
                &[q.as_str().into()],
            )
            .unwrap()
            .unwrap();
            // No segment of the refused token, nor any 16-byte piece of it.
            for segment in bad.split('.') {
                assert!(!m.contains(segment), "{m}");
            }
            for piece in bad.as_bytes().chunks(16) {
                assert!(!m.contains(std::str::from_utf8(piece).unwrap()), "{m}");
            }
            assert!(m.starts_with("token "), "{m}");
        }
    }

    #[pg_test]
    fn keys_are_checked_at_import() {
        run(
            "CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
             BEGIN EXECUTE q; RETURN NULL; EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE; END $$",
        );
        let add_hmac = |kid: &str, alg: &str, secret: &str| {
            sqlstate(&format!(
                "SELECT jwt_rls.add_hmac_key({}, {}, {}::bytea)",
                quote(kid),
                quote(alg),
                quote(secret)
            ))
        };
        assert_eq!(add_hmac("k", "HS256", "").as_deref(), Some("22023"));
        assert_eq!(
            add_hmac("k", "HS256", &"s".repeat(31)).as_deref(),
            Some("22023")
        );
        assert_eq!(
            add_hmac("k", "HS512", &"s".repeat(63)).as_deref(),
            Some("22023")
        );
        assert_eq!(
            add_hmac("k", "none", &"s".repeat(64)).as_deref(),
            Some("22023")
        );
        assert_eq!(
            add_hmac("k", "RS256", &"s".repeat(64)).as_deref(),
            Some("22023")
        );
        assert_eq!(add_hmac("k", "HS256", RS256_PEM).as_deref(), Some("22023"));
        assert_eq!(
            add_hmac("", "HS256", &"s".repeat(32)).as_deref(),
            Some("22023")
        );
        assert_eq!(add_hmac("k", "HS256", &"s".repeat(32)), None);
        let add_pem = |alg: &str, pem: &str| {
            sqlstate(&format!(
                "SELECT jwt_rls.add_pem_key('p', {}, {})",
                quote(alg),
                quote(pem)
            ))
        };
        assert_eq!(add_pem("ES256", RS256_PEM).as_deref(), Some("22023"));
        assert_eq!(add_pem("HS256", RS256_PEM).as_deref(), Some("22023"));
        assert_eq!(
            add_pem(
                "RS256",
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            )
            .as_deref(),
            Some("22023")
        );
        assert_eq!(add_pem("RS256", RS256_PEM), None);
        let imported = |jwks: &str| {
            Spi::get_one::<i32>(&format!(
                "SELECT jwt_rls.import_jwks({}::jsonb)",
                quote(jwks)
            ))
            .unwrap()
        };
        let signature_keys = serde_json::from_str::<Value>(JWKS).unwrap()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["use"] != "enc")
            .count() as i32;
        assert!(signature_keys > 0);
        assert_eq!(imported(JWKS), Some(signature_keys));
        assert_eq!(
            imported(JWKS),
            Some(0),
            "re-importing the same keys adds nothing"
        );
        // The vector kid again, with another 32-byte secret ("x" * 32).
        assert_ne!(
            HS256_SECRET_B64URL.trim(),
            "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg"
        );
        let clash = r#"{"keys":[{"kty":"oct","kid":"hs256-5e7da2e2","alg":"HS256","k":"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg"}]}"#;
        assert_eq!(
            sqlstate(&format!(
                "SELECT jwt_rls.import_jwks({}::jsonb)",
                quote(clash)
            ))
            .as_deref(),
            Some("22023")
        );
    }

    #[pg_test]
    fn disabling_a_key_takes_effect_at_the_next_statement() {
        setup();
        let t = token("ES256/valid/pyjwt");
        run(&format!("SELECT jwt_rls.authenticate({})", quote(&t)));
        assert!(text("SELECT jwt_rls.jwt_claim('sub')").is_some());
        run("SELECT jwt_rls.disable_key('es256-b91e20a8')");
        assert_eq!(
            sqlstate("SELECT jwt_rls.jwt_claim('sub')").as_deref(),
            Some("28000")
        );
        assert_eq!(
            sqlstate(&format!("SELECT jwt_rls.authenticate({})", quote(&t))).as_deref(),
            Some("28000")
        );
        run("SELECT jwt_rls.enable_key('es256-b91e20a8')");
        assert!(text("SELECT jwt_rls.jwt_claim('sub')").is_some());
        assert_eq!(
            Spi::get_one::<bool>("SELECT jwt_rls.remove_key('es256-b91e20a8')").unwrap(),
            Some(true)
        );
        assert_eq!(
            sqlstate("SELECT jwt_rls.jwt_claim('sub')").as_deref(),
            Some("28000")
        );
        assert_eq!(
            Spi::get_one::<bool>("SELECT jwt_rls.remove_key('es256-b91e20a8')").unwrap(),
            Some(false)
        );
    }

    #[pg_test]
    fn build_info_names_this_build() {
        let row =
            Spi::get_two::<String, bool>("SELECT version, debug_build FROM jwt_rls.build_info()")
                .unwrap();
        assert_eq!(
            row,
            (
                Some(env!("CARGO_PKG_VERSION").to_string()),
                Some(cfg!(debug_assertions))
            )
        );
        let commit = text("SELECT git_commit FROM jwt_rls.build_info()").unwrap();
        assert!(!commit.is_empty());
        let same_major = "SELECT pg_major = current_setting('server_version_num')::int / 10000 FROM jwt_rls.build_info()";
        assert_eq!(Spi::get_one::<bool>(same_major).unwrap(), Some(true));
    }

    #[pg_test]
    fn policy_changes_apply_to_cached_tokens() {
        setup();
        let t = token("RS256/valid/pyjwt");
        run(&format!("SELECT jwt_rls.authenticate({})", quote(&t)));
        run("SET LOCAL jwt_rls.audience = 'another-service'");
        assert_eq!(
            sqlstate("SELECT jwt_rls.jwt_claim('sub')").as_deref(),
            Some("28000")
        );
        run("SET LOCAL jwt_rls.audience = 'jwt-rls-tests'");
        assert!(text("SELECT jwt_rls.jwt_claim('sub')").is_some());
        run("SET LOCAL jwt_rls.max_token_bytes = 256");
        assert_eq!(
            sqlstate("SELECT jwt_rls.jwt_claim('sub')").as_deref(),
            Some("22023")
        );
    }
}
