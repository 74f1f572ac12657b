#!/usr/bin/env bash
# Builds the Debian package postgresql-NN-jwt-rls for PG_MAJOR (default 15;
# any of scripts/pg-majors.sh) in Debian's naming and layout for PostgreSQL
# extensions (/usr/lib/postgresql/NN/lib, /usr/share/postgresql/NN/extension,
# as Debian's and PGDG's postgresql-NN packages lay them out) from `cargo
# pgrx package`, into target/deb/. Depends are read off the library's
# NEEDED entries.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_MAJOR="${PG_MAJOR:-15}"
. scripts/pg-majors.sh
PG_CONFIG="$(pg_config_of "$PG_MAJOR")"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
ARCH="$(dpkg --print-architecture)"
NAME="postgresql-${PG_MAJOR}-jwt-rls"
STAGE="target/deb/${NAME}_${VERSION}-1_${ARCH}"

# shellcheck disable=SC2046
cargo pgrx package $(pgrx_build_args_of "$PG_MAJOR") >/dev/null
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN" "$STAGE/usr/share/doc/${NAME}"
# The package tree has the paths of the pg_config it was built with (for
# majors other than Debian's 15, the unpacked PyPI build's): the library
# and the extension's files go where Debian puts them.
built="target/release/jwt_rls-pg${PG_MAJOR}"
lib="$STAGE/usr/lib/postgresql/${PG_MAJOR}/lib"
ext="$STAGE/usr/share/postgresql/${PG_MAJOR}/extension"
mkdir -p "$lib" "$ext"
cp -a "$built$("$PG_CONFIG" --pkglibdir)/jwt_rls.so" "$lib/"
cp -a "$built$("$PG_CONFIG" --sharedir)/extension/." "$ext/"
# The released base schemas, so that older versions can still be created
# and updated (CREATE EXTENSION jwt_rls VERSION '0.1.0').
for base in sql/generated/jwt_rls--*.sql; do
  case "$base" in *--*--*) ;; *) cp "$base" "$ext/" ;; esac
done
cp README.md SECURITY.md CHANGELOG.md "$STAGE/usr/share/doc/${NAME}/"
cat > "$STAGE/usr/share/doc/${NAME}/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: jwt_rls
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
COPYRIGHT

# Depends: the package of every shared library the extension links to.
# Recommends ca-certificates: the JWKS refresh worker trusts the system's
# CA store (or only jwt_rls.jwks_ca_file without it).
so="$lib/jwt_rls.so"
deps="postgresql-${PG_MAJOR}"
for lib in $(objdump -p "$so" | awk '/NEEDED/ {print $2}'); do
  path="$(ldconfig -p | awk -v l="$lib" '$1 == l && !found {print $NF; found = 1}')"
  [ -n "$path" ] || continue
  pkg="$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1)" || true
  [ -n "$pkg" ] || pkg="$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1)" || true
  [ -n "$pkg" ] || continue
  ver="$(dpkg-query -W -f='${Version}' "$pkg" | sed 's/-[^-]*$//')"
  case ",$deps," in *", $pkg (>="*) ;; *) deps="$deps, $pkg (>= $ver)" ;; esac
done

size="$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)"
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: ${NAME}
Version: ${VERSION}-1
Architecture: ${ARCH}
Maintainer: jwt_rls developers <jwt-rls@invalid.example>
Installed-Size: ${size}
Depends: ${deps}
Recommends: ca-certificates
Section: database
Priority: optional
Description: JWT verification inside PostgreSQL ${PG_MAJOR} for row-level security
 jwt_rls verifies a JSON Web Token inside the database and hands its
 verified claims to row-level-security policies; it also revokes tokens,
 keeps refresh tokens server-side and issues tokens.
CONTROL
# Debian's changelog of the package (the project's own is CHANGELOG.md
# beside it), compressed as policy asks; dated like the release.
release_date="$(sed -n "s/^## ${VERSION} — \([0-9-]*\)\$/\1/p" CHANGELOG.md | head -1)"
cat > "$STAGE/usr/share/doc/${NAME}/changelog.Debian" <<DCH
${NAME} (${VERSION}-1) unstable; urgency=medium

  * jwt_rls ${VERSION}; see /usr/share/doc/${NAME}/CHANGELOG.md.

 -- jwt_rls developers <jwt-rls@invalid.example>  $(LC_ALL=C date -R -u -d "${release_date:-today} 12:00")
DCH
gzip -9n "$STAGE/usr/share/doc/${NAME}/changelog.Debian"
find "$STAGE" -type d -exec chmod 755 {} +
find "$STAGE" -type f -exec chmod 644 {} +
# Checksums of the installed files, for debsums / dpkg --verify.
(cd "$STAGE" && find usr -type f -print0 | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
chmod 644 "$STAGE/DEBIAN/md5sums"
dpkg-deb --root-owner-group --build "$STAGE" "target/deb/" >/dev/null
echo "target/deb/${NAME}_${VERSION}-1_${ARCH}.deb"
