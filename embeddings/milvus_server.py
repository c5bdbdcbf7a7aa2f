"""`rgcd milvus start|stop|status`: the packaged Milvus standalone server for one workspace.

The registry package `milvus==2.3.5` ships a real Milvus standalone server (the C++ engine with
embedded etcd, rocksmq and local storage; the Linux binary is inside the wheel, nothing downloads).
Here it keeps everything under <workspace>/milvus-server/ (binaries unpacked there, configs, logs,
data) and is reachable on 127.0.0.1 only:

- Its proxy, metrics endpoint and coordinators listen on every interface whatever its configuration
  says (only etcd takes 127.0.0.1), so the server runs in a network namespace of its own with only
  loopback up: no other host, and no other process of this machine, reaches its ports.
- The launcher (this module run as `python -m rgcd.embeddings.milvus_server run ...`) opens the one door:
  it listens on 127.0.0.1:<port> in the machine's namespace *before* it enters the new namespace,
  then relays each accepted connection to the proxy inside (127.0.0.1:19530 there). Clients use
  `http://127.0.0.1:<port>` as `retrieval.milvus_uri`, unchanged: tests and `rgcd serve` need no
  nsenter. Inside its namespace the server keeps its default ports, so servers of several
  workspaces on one machine never collide.
- The namespace needs root (CLONE_NEWNET) or, for a plain user, a user namespace around it; where
  neither is allowed the launcher refuses to start (it never runs the server on the machine's
  interfaces).
- Stop: SIGINT to the launcher's pid (recorded in <workspace>/milvus-server/launcher.json with its
  start time, so a reused pid is never signalled); it stops the server (SIGINT, SIGKILL after a
  grace) and exits. If the launcher dies, the kernel stops the server (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from rgcd.errors import RgcdError
from rgcd.workers import die_with_parent

DEFAULT_PORT = 19530
INNER_PROXY = 19530  # the proxy's port inside the namespace (the package's default)
INNER_METRICS = 9091  # /healthz inside the namespace
STATE = "launcher.json"
LOG = "launcher.log"
READY_TIMEOUT_S = 180
STOP_GRACE_S = 5  # a 2.3 standalone often hangs in its graceful stop; its data survives a kill
CLONE_NEWNET, CLONE_NEWUSER = 0x40000000, 0x10000000


class MilvusServerError(RgcdError):
    """The packaged Milvus server cannot do what was asked; the message says what to do."""

    exit_code = 2


@dataclass(frozen=True)
class ServerState:
    """What the launcher records about itself (launcher.json)."""

    pid: int
    proc_start: int  # the launcher's start time in clock ticks (/proc/<pid>/stat): guards against pid reuse
    port: int
    uri: str
    data_dir: str
    namespace: str  # how the network namespace was made: "netns" (root) or "userns+netns"
    ready: bool
    started_s: float  # seconds from launch to a server that answers /healthz (0 until ready)
    server_pid: int


def server_dir(root: Path) -> Path:
    """Where a workspace's server keeps everything: <workspace>/milvus-server."""
    return Path(root) / "milvus-server"


def uri_for(port: int) -> str:
    """The URI clients give `retrieval.milvus_uri`."""
    return f"http://127.0.0.1:{port}"


def port_of(uri: str) -> int | None:
    """The port of a loopback server URI (http://127.0.0.1:P or localhost:P), else None."""
    for prefix in ("http://127.0.0.1:", "http://localhost:", "tcp://127.0.0.1:", "tcp://localhost:"):
        if uri.startswith(prefix) and uri[len(prefix):].rstrip("/").isdigit():
            return int(uri[len(prefix):].rstrip("/"))
    return None


# -- the launcher (runs in its own process) -------------------------------------------------------

def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _enter_private_network() -> str:
    """Move this process into a new network namespace (only loopback, brought up); how it was made."""
    libc = _libc()
    if libc.unshare(CLONE_NEWNET) == 0:
        how = "netns"
    else:
        uid, gid = os.getuid(), os.getgid()
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise MilvusServerError(
                f"cannot make a private network namespace for the Milvus server ({os.strerror(err)}): it "
                "listens on every interface, so it only runs isolated; run `rgcd milvus start` as root, "
                "or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)")
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
        Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
        how = "userns+netns"
    _loopback_up()
    return how


def _loopback_up() -> None:
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sh", fcntl.ioctl(s, siocgifflags, struct.pack("16sh", b"lo", 0)))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sh", b"lo", flags | iff_up))


def _start_milvus(data_dir: Path) -> subprocess.Popen:
    """The server process, configured by the package's own template, data under `data_dir`."""
    from milvus import MilvusServerConfig, _initialize_data_files

    config = MilvusServerConfig(data_dir=str(data_dir))
    # Rows not in an indexed segment (rooms started since publish, segments under the 1,024 rows Milvus
    # indexes) are searched exactly, not through the template's interim IVF (16 of 128 lists probed:
    # recall@100 0.87 over 1,000 rooms on air, benchmarks/results/retrieval_index.json)
    config.set("queryNode.segcore.interimIndex.enableIndex", "false")
    # ports inside the private namespace: the package's defaults (no other server can be there)
    config.resolve()
    _initialize_data_files(config.base_data_dir)
    exe = data_dir / "bin" / "milvus"
    env = dict(os.environ, DEPLOY_MODE="STANDALONE", METRICS_PORT=str(INNER_METRICS),
               MILVUS_RUN_DIR=str(data_dir / "run"),
               LD_LIBRARY_PATH=":".join([str(exe.parent), os.environ.get("LD_LIBRARY_PATH", "")]))
    logs = data_dir / "logs"
    with open(logs / "milvus-stdout.log", "w") as out, open(logs / "milvus-stderr.log", "w") as err:
        return subprocess.Popen([str(exe), "run", "standalone"], cwd=data_dir, env=env, stdout=out,
                                stderr=err, preexec_fn=die_with_parent)  # between fork and exec


def _healthy() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{INNER_METRICS}/healthz", timeout=2) as resp:
            return b"OK" in resp.read()
    except OSError:
        return False


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


async def _relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    """One client connection from the machine's loopback to the proxy inside the namespace."""
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", INNER_PROXY)
    except OSError:
        client_w.close()
        return
    await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))


def relay_listener(port: int) -> socket.socket:
    """The launcher's listening socket on 127.0.0.1:port.

    Made with proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets whose `proto` says TCP, and
    the connections a plain `socket(AF_INET, SOCK_STREAM)` accepts say 0. Without it, Nagle held
    back small gRPC frames until the client's delayed ACK: ~1% of searches took 40 ms more (measured
    through the relay against straight to the proxy, docs/serving.md)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError as err:
        listener.close()
        raise MilvusServerError(f"127.0.0.1:{port} is taken ({err}): stop what listens there, or choose "
                                "another port (rgcd milvus start --port P)") from None
    listener.listen(128)
    return listener


def _write_state(data_dir: Path, state: ServerState) -> None:
    tmp = data_dir / (STATE + ".tmp")
    tmp.write_text(json.dumps(asdict(state)))
    tmp.replace(data_dir / STATE)


def proc_start_ticks(pid: int) -> int | None:
    """A process's start time in clock ticks since boot, or None when no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def run(data_dir: Path, port: int) -> None:
    """The launcher: listen on 127.0.0.1:port, enter a private network, run the server, relay, and stop
    the server on SIGINT/SIGTERM."""
    t0 = time.monotonic()
    data_dir.mkdir(parents=True, exist_ok=True)
    listener = relay_listener(port)  # in the machine's namespace, before unshare
    namespace = _enter_private_network()
    milvus = _start_milvus(data_dir)
    state = ServerState(os.getpid(), proc_start_ticks(os.getpid()) or 0, port, uri_for(port), str(data_dir),
                        namespace, False, 0.0, milvus.pid)
    _write_state(data_dir, state)
    stopping = {"flag": False}

    def stop(*_: object) -> None:
        stopping["flag"] = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _healthy():
            if stopping["flag"] or milvus.poll() is not None or time.monotonic() > deadline:
                why = ("stopped while starting" if stopping["flag"] else
                       f"exited with {milvus.returncode}" if milvus.returncode is not None else
                       f"not healthy in {READY_TIMEOUT_S} s")
                print(f"milvus server {why}; see {data_dir / 'logs'}", file=sys.stderr, flush=True)
                return
            time.sleep(0.2)
        _write_state(data_dir, ServerState(**{**asdict(state), "ready": True,
                                              "started_s": round(time.monotonic() - t0, 2)}))
        asyncio.run(_serve(listener, milvus, stopping))
    finally:
        _stop_milvus(milvus)
        with contextlib.suppress(OSError):
            (data_dir / STATE).unlink()
        listener.close()


async def _serve(listener: socket.socket, milvus: subprocess.Popen, stopping: dict) -> None:
    server = await asyncio.start_server(_relay, sock=listener, limit=1 << 20)
    async with server:
        while not stopping["flag"] and milvus.poll() is None:
            await asyncio.sleep(0.2)
    if milvus.poll() is not None:
        print(f"milvus server exited with {milvus.returncode}", file=sys.stderr, flush=True)


def _stop_milvus(milvus: subprocess.Popen) -> None:
    if milvus.poll() is not None:
        return
    milvus.send_signal(signal.SIGINT)
    try:
        milvus.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        milvus.kill()
        milvus.wait(10)


# -- the commands (run in the caller's process) ---------------------------------------------------

def read_state(root: Path) -> ServerState | None:
    """The running launcher of this workspace, or None (no state file, or its pid is gone/reused)."""
    path = server_dir(root) / STATE
    try:
        state = ServerState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if proc_start_ticks(state.pid) != state.proc_start:
        return None  # the launcher died without cleaning up; its pid may belong to another process now
    return state


def start(root: Path, port: int = DEFAULT_PORT, timeout_s: float = READY_TIMEOUT_S,
          progress=None) -> ServerState:
    """Start the workspace's server in the background and wait until it answers through the relay.

    Returns the running launcher's state (the one already running, if any, on the same port).
    """
    data_dir = server_dir(root).resolve()
    running = read_state(root)
    if running:
        if running.port != port:
            raise MilvusServerError(f"this workspace's Milvus server already runs on {running.uri} (pid "
                                    f"{running.pid}): `rgcd milvus stop` first to move it to port {port}")
        return running
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / STATE).unlink(missing_ok=True)
    log = open(data_dir / LOG, "w")  # noqa: SIM115 (the launcher keeps it)
    proc = subprocess.Popen(
        [sys.executable, "-m", __spec__.name if __spec__ else "rgcd.embeddings.milvus_server", "run",
         "--data-dir", str(data_dir), "--port", str(port)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    t0, shown = time.monotonic(), 0
    while True:
        state = read_state(root)
        if state and state.ready and state.pid == proc.pid:
            break
        if proc.poll() is not None:
            tail = (data_dir / LOG).read_text()[-2000:].strip()
            raise MilvusServerError(f"the Milvus server did not start (launcher exited with "
                                    f"{proc.returncode}): {tail or 'no output'}; logs: {data_dir / 'logs'}")
        if time.monotonic() - t0 > timeout_s:
            os.kill(proc.pid, signal.SIGINT)
            raise MilvusServerError(f"the Milvus server did not answer in {timeout_s:g} s; stopped it; its "
                                    f"logs: {data_dir / 'logs'}")
        if progress and int(time.monotonic() - t0) >= shown + 5:
            shown = int(time.monotonic() - t0)
            progress(f"starting the Milvus server ... {shown} s")
        time.sleep(0.2)
    check_reachable(state.uri)
    return state


def check_reachable(uri: str, token: str = "") -> str:
    """The server's version through `uri` (what a client sees); MilvusServerError if it does not answer."""
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    try:
        client = MilvusClient(uri=uri, token=token, timeout=10) if token else MilvusClient(uri=uri,
                                                                                            timeout=10)
        try:
            return client.get_server_version()
        finally:
            client.close()
    except (MilvusException, OSError) as err:
        raise MilvusServerError(f"the Milvus server at {uri} does not answer ({err})") from None


def stop(root: Path, timeout_s: float = STOP_GRACE_S + 15) -> ServerState | None:
    """SIGINT to the workspace's launcher by its recorded pid; wait until it exits. None if none ran."""
    state = read_state(root)
    if state is None:
        return None
    os.kill(state.pid, signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    while proc_start_ticks(state.pid) == state.proc_start:
        if time.monotonic() > deadline:
            raise MilvusServerError(f"the Milvus server's launcher (pid {state.pid}) did not stop in "
                                    f"{timeout_s:g} s; look at {server_dir(root) / LOG}")
        with contextlib.suppress(ChildProcessError):
            os.waitpid(state.pid, os.WNOHANG)  # reap it when it is our own child (tests)
        time.sleep(0.2)
    return state


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (bytes)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total


def status(root: Path) -> dict:
    """What `rgcd milvus status` prints: running or not, URI, pids, memory, version, data size."""
    state = read_state(root)
    data_dir = server_dir(root)
    if state is None:
        return {"running": False, "data_dir": str(data_dir)}
    out = {"running": True, "ready": state.ready, "uri": state.uri, "pid": state.pid,
           "server_pid": state.server_pid, "namespace": state.namespace, "started_s": state.started_s,
           "rss_mib": round(rss_bytes(state.pid) / 2**20, 1), "data_dir": str(data_dir)}
    if state.ready:
        try:
            out["version"] = check_reachable(state.uri)
        except MilvusServerError as err:
            out["error"] = str(err)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the packaged Milvus server's launcher (see the module)")
    parser.add_argument("command", choices=["run"])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    try:
        run(args.data_dir, args.port)
    except MilvusServerError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
