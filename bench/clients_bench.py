"""Push and pull wall times of real clients (skopeo; containerd's ctr) against each target.

Every run pushes to a fresh repository with empty client-side caches (skopeo's blob-info
cache is wiped, ctr imports into a fresh namespace), so no run is turned into cross-repository
mounts by an earlier one; every pull goes into an empty destination (a new OCI layout, a new
ctr namespace). Runs interleave the targets so that a load spike hits all of them alike.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.clients import ContainersTools
from tests.e2e.daemons import Containerd, RegistryTarget, private_containerd
from tests.e2e.images import Image, ImageFactory, Index
from tests.e2e.procs import CommandError, remove_tree

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class BenchImage:
    key: str
    description: str
    obj: Image | Index
    layout: Path
    archive: Path
    multi: bool
    total_bytes: int


def build_images(factory: ImageFactory, workdir: Path, quick: bool = False) -> list[BenchImage]:
    """The four workloads: many small layers, five layers, one big layer, an index."""
    small_n, small_size = (10, 64 * KIB) if quick else (50, 64 * KIB)
    five_size = 256 * KIB if quick else 2 * MIB
    big_size = 8 * MIB if quick else 100 * MIB
    out: list[BenchImage] = []

    def add(key: str, description: str, obj: Image | Index) -> None:
        layout = factory.oci_layout(workdir / f"{key}.oci", [("v1", obj)])
        archive = factory.oci_archive(workdir / f"{key}.tar", [("v1", obj)])
        images = obj.images if isinstance(obj, Index) else (obj,)
        total = sum(d.size for img in images for d in img.blob_descriptors())
        out.append(
            BenchImage(key, description, obj, layout, archive, isinstance(obj, Index), total)
        )

    layers = [
        factory.layer(f"small-{i}", {f"small/{i}.bin": small_size}, gzip_level=1)
        for i in range(small_n)
    ]
    add("small50", f"{small_n} x {small_size // KIB} KiB layers", factory.image("small", layers))
    layers = [
        factory.layer(f"five-{i}", {f"five/{i}.bin": five_size}, gzip_level=1) for i in range(5)
    ]
    add("five", f"5 x {five_size // KIB} KiB layers", factory.image("five", layers))
    big = factory.layer("big", {"big/random.bin": big_size}, gzip_level=1)
    add("big", f"1 x {big_size // MIB} MiB layer", factory.image("big", [big]))
    platforms = []
    for arch in ("amd64", "arm64"):
        arch_layers = [
            factory.layer(f"idx-{arch}-{i}", {f"idx/{arch}/{i}.bin": 256 * KIB}, gzip_level=1)
            for i in range(3)
        ]
        platforms.append(factory.image(f"idx-{arch}", arch_layers, arch=arch))
    add("index", "index: 2 platforms x 3 x 256 KiB", factory.index("idx", platforms))
    return out


class Skopeo:
    name = "skopeo"

    def __init__(self, base: Path) -> None:
        self.short = Path(tempfile.mkdtemp(prefix="psbench-", dir="/tmp"))
        self.tools = ContainersTools(base, self.short / "runroot")
        self.pulls = base / "pulls"

    def close(self) -> None:
        remove_tree(self.short)

    def _clear_cache(self) -> None:
        for f in self.tools.cache_files():
            f.unlink()

    def prepare_push(self, target: RegistryTarget, image: BenchImage, run: int) -> None:
        self._clear_cache()

    def push(self, target: RegistryTarget, image: BenchImage, ref: str) -> None:
        extra = ["--all"] if image.multi else []
        self.tools.skopeo(
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            target.creds,
            *extra,
            f"oci:{image.layout}:v1",
            f"docker://{ref}",
        )

    def pull(self, target: RegistryTarget, image: BenchImage, ref: str, run: int) -> None:
        self._clear_cache()
        dest = self.pulls / f"{image.key}-{run}"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        extra = ["--all"] if image.multi else []
        try:
            self.tools.skopeo(
                "copy",
                "--preserve-digests",
                "--src-tls-verify=false",
                "--src-creds",
                target.creds,
                *extra,
                f"docker://{ref}",
                f"oci:{dest}:v1",
            )
        finally:
            shutil.rmtree(dest, ignore_errors=True)


class Ctr:
    name = "ctr"

    def __init__(self, containerd: Containerd) -> None:
        self.containerd = containerd
        self._ns = 0

    def close(self) -> None:
        pass

    def _namespace(self, kind: str) -> str:
        self._ns += 1
        return f"{kind}{self._ns}"

    def prepare_push(self, target: RegistryTarget, image: BenchImage, run: int) -> None:
        self.push_ns = self._namespace("push")
        self.containerd.ctr(
            self.push_ns,
            "images",
            "import",
            "--all-platforms",
            "--no-unpack",
            "--base-name",
            f"local.bench/{image.key}",
            str(image.archive),
        )

    def push(self, target: RegistryTarget, image: BenchImage, ref: str) -> None:
        self.containerd.ctr(
            self.push_ns,
            "images",
            "push",
            "--plain-http",
            "--user",
            target.creds,
            ref,
            f"local.bench/{image.key}:v1",
        )

    def pull(self, target: RegistryTarget, image: BenchImage, ref: str, run: int) -> None:
        self.containerd.ctr(
            self._namespace("pull"),
            "content",
            "fetch",
            "--plain-http",
            "--user",
            target.creds,
            "--all-platforms",
            ref,
        )


def _stats(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": [round(v, 4) for v in values],
    }


@contextmanager
def clients(workdir: Path, names: list[str]) -> Iterator[list[Any]]:
    with ExitStack() as stack:
        out: list[Any] = []
        for name in names:
            if name == "skopeo":
                sk = Skopeo(workdir / "skopeo")
                stack.callback(sk.close)
                out.append(sk)
            elif name == "ctr":
                containerd = stack.enter_context(private_containerd(workdir / "containerd"))
                out.append(Ctr(containerd))
        yield out


def run_client_bench(
    targets: dict[str, RegistryTarget],
    images: list[BenchImage],
    client_objs: list[Any],
    runs: int,
    log: Callable[[str], None] = print,
    deadline: float | None = None,
) -> dict[str, Any]:
    """``{client: {image: {op: {target: stats}}}}``, wall seconds per operation."""
    times: dict[tuple[str, str, str, str], list[float]] = {}
    failures: list[str] = []
    for run in range(runs):
        for image in images:
            for client in client_objs:
                for tname, target in targets.items():
                    if deadline is not None and time.monotonic() > deadline:
                        log("client bench: time budget spent, stopping early")
                        return _collect(times, failures)
                    repo = f"{client.name}/{image.key}-r{run}"
                    ref = target.ref(repo, "v1")
                    try:
                        client.prepare_push(target, image, run)
                        started = time.monotonic()
                        client.push(target, image, ref)
                        pushed = time.monotonic() - started
                        started = time.monotonic()
                        client.pull(target, image, ref, run)
                        pulled = time.monotonic() - started
                    except CommandError as exc:
                        # A failed run is reported, not timed; the other figures go on.
                        message = str(exc).splitlines()
                        detail = next((m for m in message if m.startswith("ctr:")), message[0])
                        failures.append(
                            f"run {run + 1} {client.name} {image.key} {tname}: {detail}"
                        )
                        log(f"  FAILED {failures[-1]}")
                        continue
                    times.setdefault((client.name, image.key, "push", tname), []).append(pushed)
                    times.setdefault((client.name, image.key, "pull", tname), []).append(pulled)
                    log(
                        f"  run {run + 1}/{runs} {client.name:<6} {image.key:<8} {tname:<16} "
                        f"push {pushed:6.2f}s  pull {pulled:6.2f}s"
                    )
    return _collect(times, failures)


def _collect(
    times: dict[tuple[str, str, str, str], list[float]], failures: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {"failures": failures} if failures else {}
    for (client, image, op, target), values in times.items():
        out.setdefault(client, {}).setdefault(image, {}).setdefault(op, {})[target] = _stats(values)
    return out
