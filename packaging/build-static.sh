#!/usr/bin/env bash
# Builds a fully static x86_64 Linux posthorn and a release tarball around it.
#
#   packaging/build-static.sh            # binary + tarball under target/static
#   CARGO_TARGET_DIR=/tmp/t packaging/build-static.sh
#
# With the x86_64-unknown-linux-musl target installed (rustup target add
# x86_64-unknown-linux-musl) it builds against musl. Without it, it builds a static glibc
# binary (-C target-feature=+crt-static, position independent: "static-pie linked", for
# which ldd says "statically linked"). glibc 2.34 and newer link the "files" and "dns"
# name services into libc itself, so host names (/etc/hosts, then DNS per resolv.conf)
# resolve without loading any shared library; other NSS modules named in
# /etc/nsswitch.conf (mdns, myhostname, resolve, ldap, ...) cannot be loaded by a static
# binary and are skipped as unavailable (glibc's link-time warning about getaddrinfo in
# static programs, which rustc does not show, is about those modules).
#
# The last lines of output name the binary, what `ldd` says of it, and its size; the
# script fails unless `ldd` says it is not dynamic.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/static}"

# (Lists are captured before matching: with pipefail, `grep -q` closing a pipe early
# would fail the pipeline.)
installed="$(rustup target list --installed 2>/dev/null || true)"
if grep -qx x86_64-unknown-linux-musl <<<"$installed"; then
    target=x86_64-unknown-linux-musl
    flavour="musl"
    # musl targets link statically by default.
    rustflags="${RUSTFLAGS:-}"
else
    target=x86_64-unknown-linux-gnu
    flavour="static $(getconf GNU_LIBC_VERSION)"
    # getrandom (under rand) finds glibc's getrandom() with dlsym, which a static binary
    # cannot do, and would fall back to reading /dev/urandom; name the backend instead so
    # it calls getrandom() directly, as the dynamic build does.
    rustflags="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\""
fi
echo "==> building posthorn for $target: $flavour, target dir $CARGO_TARGET_DIR" >&2

# An explicit --target keeps RUSTFLAGS off build scripts and proc macros, which must stay
# dynamic host programs.
RUSTFLAGS="$rustflags" cargo build --release --locked --target "$target" >&2

binary="$CARGO_TARGET_DIR/$target/release/posthorn"
verdict="$(ldd "$binary" 2>&1 || true)"
verdict="${verdict#"${verdict%%[![:space:]]*}"}"
case "$verdict" in
    *"not a dynamic executable"* | *"statically linked"*) ;;
    *)
        echo "error: $binary is dynamically linked:" >&2
        echo "$verdict" >&2
        exit 1
        ;;
esac

# The tarball: the binary plus what an operator needs beside it.
version="$("$binary" --version | awk '{print $2}')"
name="posthorn-$version-x86_64-linux"
dist="$CARGO_TARGET_DIR/dist"
stage="$dist/$name"
rm -rf "$stage"
mkdir -p "$stage/systemd"
cp "$binary" "$stage/posthorn"
cp README.md LICENSE-MIT LICENSE-APACHE config.example.toml "$stage/"
cp packaging/systemd/posthorn.service "$stage/systemd/"
tar -C "$dist" -czf "$dist/$name.tar.gz" "$name"
rm -rf "$stage"

size="$(stat -c %s "$binary")"
echo "binary:  $binary"
echo "file:    $(file -b "$binary" 2>/dev/null || echo "(file(1) not installed)")"
echo "ldd:     $verdict"
echo "size:    $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.1f MiB", s / 1048576 }'))"
echo "tarball: $dist/$name.tar.gz"
