#!/usr/bin/env python3
"""Fixtures for scripts/bench-netboot: real store paths and carried profiles.

usage: netboot-fixture.py store DIR
       netboot-fixture.py profiles DIR CASE MACHINES GENERATIONS
       netboot-fixture.py add-generation DIR CASE

`store` adds one pool of carried machines to the Nix store with a single
`nix-store --add` call per batch (fast: one process, no derivations): a kernel path
(`linux-6.6.30/bzImage`), then for machine i (0..999) generations 1..10 (i < 200) or
1..4 (others), each a toplevel `nixos-system-<host>-<g>` (`init`, `kernel` -> the
kernel) and a dist `dist-<host>-<g>` holding small `bzImage`, `initrd`, `kernel-params`,
`machine.json` (distinct fqdn and MAC, `toplevel`, version, revision, swpins-info) and,
for every 4th machine (vpsAdminOS), `root.squashfs`. The store paths go to
DIR/store.json; the call is skipped while the paths that file names exist.

`profiles` lays out DIR/CASE/profiles exactly as `nix-env -p <dir>/confctl-<m> --set`
leaves it: `confctl-<m>-<N>-link -> /nix/store/…-dist-…` (absolute) for N = 1..GENERATIONS
and `confctl-<m> -> confctl-<m>-<G>-link` (relative), generation links with mtimes one
day apart. The links are made directly instead of running nix-env thousands of times.

`add-generation` (the rebuild benchmark's prepare step) gives the next machine (a
counter in DIR/CASE/counter: machine 0, then 1, …) a new generation, its next number
pointing to a store path it did not have, and points its profile at it, as
`nix-env --set` does (link created now, profile link replaced by rename).
"""
import json
import os
import shutil
import subprocess
import sys
import time

POOL = 1000          # machines in the store pool
DEEP = 200           # machines 0..DEEP-1 have 10 generations in the pool
DEEP_GENS = 10
SHALLOW_GENS = 4     # the others: 3 for the 1000 x 3 case, +1 for the rebuild
DCS = ["prg", "brq", "ams"]
BASE_TIME = 1_790_000_000


def host(i):
    return f"node{i:04d}"


def profile_name(i):
    # carried aliases contain `/`, which becomes `:` in profile names
    return f"{DCS[i % len(DCS)]}:{host(i)}"


def fqdn(i):
    return f"{host(i)}.{DCS[i % len(DCS)]}.bench.test"


def spin(i):
    return "vpsadminos" if i % 4 == 3 else "nixos"


def mac(i):
    return "52:54:00:%02x:%02x:%02x" % ((i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF)


def gens_in_pool(i):
    return DEEP_GENS if i < DEEP else SHALLOW_GENS


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def nix_add(dirs):
    """`nix-store --add` of many directories, in batches (argument list size)."""
    out = []
    for k in range(0, len(dirs), 1000):
        batch = dirs[k:k + 1000]
        res = subprocess.run(["nix-store", "--add", *batch], check=True, capture_output=True, text=True)
        paths = res.stdout.split()
        assert len(paths) == len(batch), (len(paths), len(batch))
        out.extend(paths)
    return out


def cmd_store(dir):
    manifest = os.path.join(dir, "store.json")
    if os.path.exists(manifest):
        with open(manifest) as f:
            pool = json.load(f)
        # Still valid unless the garbage collector took the paths.
        if all(os.path.exists(p) for p in [pool["kernel"], *pool["dist"]["0"].values()]):
            return
    src = os.path.join(dir, "src")
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(os.path.join(src, "kernel", "linux-6.6.30"))
    write(os.path.join(src, "kernel", "linux-6.6.30", "bzImage"), "kernel\n")
    [kernel] = nix_add([os.path.join(src, "kernel", "linux-6.6.30")])

    tops, keys = [], []
    for i in range(POOL):
        for g in range(1, gens_in_pool(i) + 1):
            d = os.path.join(src, "top", f"nixos-system-{host(i)}-{g}")
            os.makedirs(d)
            write(os.path.join(d, "init"), f"#!/bin/sh\n# {host(i)} {g}\n")
            os.symlink(f"{kernel}/bzImage", os.path.join(d, "kernel"))
            tops.append(d)
            keys.append((i, g))
    top_paths = nix_add(tops)

    dists = []
    for (i, g), top in zip(keys, top_paths):
        d = os.path.join(src, "dist", f"dist-{host(i)}-{g}")
        os.makedirs(d)
        write(os.path.join(d, "bzImage"), f"bzImage {host(i)} {g}\n")
        write(os.path.join(d, "initrd"), f"initrd {host(i)} {g}\n")
        if spin(i) == "vpsadminos":
            write(os.path.join(d, "root.squashfs"), f"squashfs {host(i)} {g}\n")
        params = ["console=ttyS0,115200", "console=tty0", "panic=10", f"systemConfig={top}"]
        write(os.path.join(d, "kernel-params"), " ".join(params))
        rev = "%040x" % (i * 1000 + g)
        write(os.path.join(d, "machine.json"), json.dumps({
            "spin": spin(i),
            "fqdn": fqdn(i),
            "label": fqdn(i),
            "toplevel": top,
            "version": f"25.11.{20250100 + g}.{rev[:7]}",
            "revision": rev,
            "macs": [mac(i)],
            "kernelParams": params,
            "swpins-info": {"nixpkgs": {"rev": rev, "url": "https://github.com/NixOS/nixpkgs"}},
        }, indent=2))
        dists.append(d)
    dist_paths = nix_add(dists)
    shutil.rmtree(src)

    pool = {}
    for (i, g), p in zip(keys, dist_paths):
        pool.setdefault(str(i), {})[str(g)] = p
    with open(manifest + ".tmp", "w") as f:
        json.dump({"kernel": kernel, "dist": pool}, f)
    os.rename(manifest + ".tmp", manifest)


def load_pool(dir):
    with open(os.path.join(dir, "store.json")) as f:
        return json.load(f)["dist"]


def cmd_profiles(dir, case, machines, generations):
    pool = load_pool(dir)
    profiles = os.path.join(dir, case, "profiles")
    shutil.rmtree(profiles, ignore_errors=True)
    os.makedirs(profiles)
    for i in range(machines):
        name = profile_name(i)
        for g in range(1, generations + 1):
            link = os.path.join(profiles, f"confctl-{name}-{g}-link")
            os.symlink(pool[str(i)][str(g)], link)
            t = BASE_TIME + g * 86_400 + i
            os.utime(link, (t, t), follow_symlinks=False)
        os.symlink(f"confctl-{name}-{generations}-link", os.path.join(profiles, f"confctl-{name}"))
    write(os.path.join(dir, case, "counter"), "0")


def cmd_add_generation(dir, case):
    pool = load_pool(dir)
    counter_file = os.path.join(dir, case, "counter")
    with open(counter_file) as f:
        i = int(f.read())
    profiles = os.path.join(dir, case, "profiles")
    name = profile_name(i)
    prefix = f"confctl-{name}-"
    have = sorted(int(e[len(prefix):-len("-link")]) for e in os.listdir(profiles)
                  if e.startswith(prefix) and e.endswith("-link") and e[len(prefix):-len("-link")].isdigit())
    new = have[-1] + 1
    # A store path the machine does not have yet (the pool's generation `new`).
    target = pool[str(i)].get(str(new))
    if target is None:
        sys.exit(f"netboot-fixture: no spare store path for {name} generation {new} "
                 f"(the pool covers {len(pool)} machines; fewer runs, or regenerate the profiles)")
    os.symlink(target, os.path.join(profiles, f"{prefix}{new}-link"))
    tmp = os.path.join(profiles, f".confctl-{name}.tmp")
    os.symlink(f"{prefix}{new}-link", tmp)
    os.rename(tmp, os.path.join(profiles, f"confctl-{name}"))
    write(counter_file, str(i + 1))


def main():
    args = sys.argv[1:]
    if args[:1] == ["store"] and len(args) == 2:
        cmd_store(args[1])
    elif args[:1] == ["profiles"] and len(args) == 5:
        cmd_profiles(args[1], args[2], int(args[3]), int(args[4]))
    elif args[:1] == ["add-generation"] and len(args) == 3:
        cmd_add_generation(args[1], args[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
