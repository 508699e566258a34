#!/usr/bin/env bash
# Builds a guest root image from Debian's packages: a minimal Debian (debootstrap, minbase) with
# Node.js (Debian's nodejs: 20.19 in trixie) and systemd-detect-virt, plus the platform under
# /opt/ecgfaas (this checkout without .git, with its production npm packages), as a raw ext4
# image. Guests attach it read-only (any number at once) and boot the host's kernel with the
# platform's initramfs, which mounts it under a tmpfs overlay and starts the worker; the same image
# serves KVM, QEMU, Xen HVM and Xen PV guests.
#   build-rootfs.sh OUT.img CHECKOUT SUITE MIRROR   (MIRROR: a Debian archive URL; `ecgfaas image build`
#   takes it from --mirror or the machine's apt sources)
# Needs root, Debian's debootstrap and e2fsprogs (mkfs.ext4 -d), and the checkout's node_modules
# (npm ci) or the npm registry.
set -euo pipefail
out="$1"
checkout="$(cd "$2" && pwd)"
suite="${3:?usage: build-rootfs.sh OUT.img CHECKOUT SUITE MIRROR}"
mirror="${4:?usage: build-rootfs.sh OUT.img CHECKOUT SUITE MIRROR (a Debian archive URL)}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ecgfaas-rootfs-XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/root"

step() { echo "ecgfaas-image: $*" >&2; }
step "debootstrap $suite from $mirror"
debootstrap --variant=minbase --include=nodejs,systemd,ca-certificates "$suite" "$root" "$mirror" > "$work/debootstrap.log" 2>&1 || {
  tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
node_version="$(chroot "$root" node -e 'process.stdout.write(process.versions.node)')"
step "Debian's Node.js in the image: $node_version"
# The platform needs Node >= 20.19 (package.json engines); bookworm's nodejs is 18.
if ! chroot "$root" node -e 'const [major, minor] = process.versions.node.split(".").map(Number); process.exit(major > 20 || (major === 20 && minor >= 19) ? 0 : 1)'; then
  echo "Debian $suite's nodejs is $node_version; the platform needs Node >= 20.19 (use --suite trixie or later)" >&2
  exit 1
fi

step "the platform under /opt/ecgfaas"
app="$root/opt/ecgfaas"
mkdir -p "$app"
tar -C "$checkout" --exclude=./.git --exclude=./node_modules --exclude='./.ecgfaas*' --exclude='./reports' --exclude='./tmp' --exclude='*.img' -cf - . | tar -C "$app" -xf -
if [ -d "$checkout/node_modules" ]; then
  cp -a "$checkout/node_modules" "$app/node_modules"
  (cd "$app" && npm prune --omit=dev --no-audit --no-fund > "$work/npm.log" 2>&1) || { tail -n 20 "$work/npm.log" >&2; exit 1; }
else
  (cd "$app" && npm ci --omit=dev --no-audit --no-fund > "$work/npm.log" 2>&1) || { tail -n 20 "$work/npm.log" >&2; exit 1; }
fi
# onnxruntime-node ships binaries for every platform; the guest needs linux/x64's only.
find "$app/node_modules/onnxruntime-node/bin" -mindepth 3 -maxdepth 3 -type d ! -path '*/linux/x64' -exec rm -rf {} + 2>/dev/null || true
find "$app/node_modules/onnxruntime-node/bin" -mindepth 2 -maxdepth 2 -type d ! -name linux -exec rm -rf {} + 2>/dev/null || true

# Compile the platform's TypeScript once here (tsx keeps its cache in /tmp, which the guest's
# overlay keeps): an emulated guest would otherwise spend minutes on it at every boot. The CLI
# imports every command's modules, so its help compiles what the worker runs.
step "warming the compile cache"
chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root sh -c 'cd /opt/ecgfaas && node bin/ecgfaas.js worker --help' > /dev/null

# What a worker never reads.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
echo "ecgfaas guest root image; commit $(git -C "$checkout" rev-parse HEAD 2>/dev/null || echo unknown); node $node_version; suite $suite; built $(date -u +%FT%TZ)" > "$app/IMAGE"

size_mb=$(( $(du -sm "$root" | cut -f1) * 12 / 10 + 64 ))
step "ext4 image of ${size_mb} MB"
mkdir -p "$(dirname "$out")"
mkfs.ext4 -q -F -L ecgfaas-root -d "$root" "$out.tmp" "${size_mb}M"
mv "$out.tmp" "$out"
echo "$out"
