#!/bin/sh
# Stands in for Prisma's schema engine (a Rust binary the CLI would download
# from a host this project cannot reach). `prisma generate` only checks that
# the file exists and never runs it; migrations would, and fail here loudly.
echo "jwt_rls tests: Prisma's schema engine is not installed (prisma generate does not need it)" >&2
exit 1
