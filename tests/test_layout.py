"""The package's layout holds: the import contracts in pyproject.toml ([tool.importlinter]) are
kept and would catch a violation, no module imports itself through others, and `beach serve`
loads no key, terminal or WebRTC code at all (and Redis only with --redis)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Callable
from pathlib import Path

import aiohttp
import grimp
import pytest
from conftest import beach_env, free_port, need
from wsconn import Conn

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACT_IDS = [c["id"] for c in CONTRACTS["contracts"]]

# What the server must never load: it handles no secret, no terminal and no peer link.
NOT_IN_SERVER = (
    "beach_cli.host",
    "beach_cli.join",
    "beach_cli.keys",
    "beach_cli.link",
    "beach_cli.rendezvous",
    "beach_cli.resume",
    "beach_cli.terminal",
    "aioice",
    "aiortc",
    "av",
    "cryptography",
    "spake2",
)


def lint_imports(cwd: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    args = [str(BIN / "lint-imports"), "--no-cache", "--no-logo"]
    for contract in contracts:
        args += ["--contract", contract]
    return subprocess.run(
        args,
        cwd=cwd,
        env={**beach_env(), "PYTHONPATH": str(cwd)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("contract", CONTRACT_IDS)
def test_import_contract_is_kept(contract: str) -> None:
    result = lint_imports(ROOT, contract)
    assert result.returncode == 0, result.stdout + result.stderr


# Each planted import breaks the named contract: the contracts are strict enough to matter.
VIOLATIONS = {
    "server-learns-nothing": {
        "server/turn.py": "import typing\nif typing.TYPE_CHECKING:\n    import beach_cli.keys\n",
        "server/metrics.py": "import cryptography\n",
        "server/edge.py": "from beach_cli import terminal\n",
        "server/tickets.py": "from beach_cli.link import reach\n",
    },
    "layers": {
        "link/reach.py": "from beach_cli.host import screen\n",
        "keys.py": "from beach_cli import terminal\n",
        "join/wrap.py": "from beach_cli.host import screen\n",
        "errors.py": "from beach_cli import text\n",
        "text.py": "from beach_cli import tasks\n",
        "wire/ids.py": "from beach_cli import resume\n",
        "unplaced.py": "",  # a module of beach_cli outside every layer
    },
    "join-not-server": {"join/viewport.py": "from beach_cli.server import metrics\n"},
    "wire-formats-only": {
        "wire/ids.py": "from beach_cli import text\n",
        "wire/frames.py": "import aiohttp\n",
    },
    "redis-in-cluster-only": {"server/app.py": "import redis\n"},
    "no-cycles": {"server/metrics.py": "from beach_cli.server import app\n"},
    "no-cycles-in-host": {"host/recorder.py": "from beach_cli.host import session\n"},
}


@pytest.mark.parametrize(
    "contract,path,code",
    [(c, p, code) for c, planted in VIOLATIONS.items() for p, code in planted.items()],
    ids=lambda v: v if isinstance(v, str) and "\n" not in v else "",
)
def test_import_contract_catches_a_violation(
    tmp_path: Path, contract: str, path: str, code: str
) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(
        ROOT / "beach_cli", tmp_path / "beach_cli", ignore=shutil.ignore_patterns("__pycache__")
    )
    target = tmp_path / "beach_cli" / path
    target.write_text((target.read_text() if target.exists() else "") + "\n" + code)
    result = lint_imports(tmp_path, contract)
    assert result.returncode != 0, f"{contract} kept with {code!r} in {path}:\n{result.stdout}"
    assert "BROKEN" in result.stdout, result.stdout + result.stderr


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_module_imports_itself_through_others() -> None:
    # TYPE_CHECKING imports count: a cycle for the type checker is one for the reader too.
    graph = grimp.build_graph("beach_cli", exclude_type_checking_imports=False)
    assert import_cycles(graph) == []


def test_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("p.a", "p.b", "p.c", "p.d"):
        graph.add_module(name)
    for importer, imported in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.d", "p.a")):
        graph.add_import(importer=importer, imported=imported)
    assert import_cycles(graph) == [["p.a", "p.b", "p.c"]]


def loaded_by(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        env=beach_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def below(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(package + "."))


def forbidden(modules: set[str]) -> list[str]:
    return [m for package in NOT_IN_SERVER for m in below(modules, package)]


def test_importing_the_server_loads_no_keys_nor_redis() -> None:
    modules = loaded_by("import beach_cli.server.app, beach_cli.server.edge, beach_cli.cli")
    assert {m for m in modules if m.startswith("beach_cli.server.")} >= {"beach_cli.server.app"}
    assert forbidden(modules) == []
    assert below(modules, "redis") == []


# Runs `beach serve` in this interpreter and writes the modules it loaded when it exits.
SERVE = textwrap.dedent(
    """
    import atexit, json, sys
    out = sys.argv.pop(1)
    atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
    sys.argv[0] = "beach"
    from beach_cli.cli import main
    main()
    """
)


async def wait_for(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def exercise(url: str) -> None:
    """Every kind of request the server answers: health, metrics, the browser page, and a
    session's handshake."""
    base = url.replace("ws://", "http://").removesuffix("/ws")
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/metrics", "/j/", "/j/beach.js", "/j/beach.css"):
            async with http.get(base + path) as resp:
                assert resp.status == 200, path

        async def connect() -> Conn:
            conn = Conn(await http.ws_connect(url))
            conn.welcome = await conn.expect("welcome")
            return conn

        host = await connect()
        await host.send("host")
        registered = await host.expect("registered")
        sid = registered["session"]
        joiner = await connect()
        await joiner.send("join", session=sid)
        peer = (await joiner.expect("joined"))["peer"]
        await host.expect("peer_joined", peer=peer)
        await joiner.send("signal", to="host", data={"offer": "x"})
        await host.expect("signal")
        await host.send("relay", to=peer, data="sealed")
        await joiner.expect("relay")
        await joiner.send_raw("not json")
        await joiner.expect("error")
        await host.send("drop", peer=peer)
        await host.ws.close()
        back = await connect()  # the host comes back with its ticket
        await back.send("host", session=sid, reclaim=registered["reclaim"])
        await back.expect("registered", session=sid)
        await back.ws.close()
        await joiner.ws.close()


async def run_serve(tmp_path: Path, *args: str) -> set[str]:
    """The modules a real `beach serve` has loaded after answering everything once."""
    out, log = tmp_path / "modules.json", tmp_path / "serve.log"
    argv = ["serve", "--host", "127.0.0.1", "--port", "0", "--state-file", str(tmp_path / "k")]
    with log.open("w") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SERVE,
            str(out),
            *argv,
            *args,
            env=beach_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        started = lambda: "listening on" in log.read_text() or proc.returncode is not None  # noqa: E731
        await wait_for(started, "beach serve to listen")
        text = log.read_text()
        assert "listening on" in text, text
        await exercise(text.split("listening on ", 1)[1].split()[0])
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)
    assert out.exists(), log.read_text()
    return set(json.loads(out.read_text()))


@pytest.mark.e2e
async def test_beach_serve_loads_no_keys_terminals_links_nor_redis(tmp_path: Path) -> None:
    modules = await run_serve(tmp_path)
    assert "beach_cli.server.app" in modules
    assert forbidden(modules) == []
    assert below(modules, "redis") == []


@pytest.mark.e2e
async def test_beach_serve_with_redis_loads_redis_and_still_no_keys(tmp_path: Path) -> None:
    port = free_port()
    redis = await asyncio.create_subprocess_exec(
        need("redis-server"),
        *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        await wait_for(listening, "redis-server")
        modules = await run_serve(tmp_path, "--redis", f"redis://127.0.0.1:{port}/0")
    finally:
        redis.terminate()
        await asyncio.wait_for(redis.wait(), 10)
    assert "beach_cli.server.cluster" in modules and "redis" in modules
    # redis.utils imports the bare `cryptography` package to learn whether it could check OCSP
    # staples: no primitive of it is loaded, and nothing of ours.
    probe = {"cryptography", "cryptography.__about__"}
    assert [m for m in forbidden(modules) if m not in probe] == []
