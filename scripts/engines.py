"""Get, start, stop and report single-node Elasticsearch and OpenSearch servers, without Docker.

    python scripts/engines.py fetch                       # download + prepare both (cached)
    python scripts/engines.py start opensearch [--port N] # prints {"engine", "url", "pid", ...} as JSON
    python scripts/engines.py status
    python scripts/engines.py stop opensearch

Everything comes from Maven Central (the only place this project's machines reach)
and is cached outside the clone in ``$RELEVANCE_ENGINES_HOME`` (default
``~/.cache/relevance-engines``). Versions are pinned here and nowhere else.

What the published integration-test zips lack, and what this script does about it
(found by trying, 2026-11):
- OpenSearch 2.19.1 ships only transport-netty4. The k-NN plugin needs lang-painless,
  and the English analyzer lives in analysis-common; both are on Maven Central only
  as jars, so they are rebuilt here as modules (jar + plugin descriptor).
  OpenSearch 2.19.1 is the one version with both a zip and a matching k-NN plugin.
  The neural-search plugin (hybrid query, normalization processor) is not published.
- Elasticsearch 9.5.3 ships no analysis-common and no rank-rrf module. A two-class
  "stable plugin" compiled here against the zip's own jars provides the ``english``
  analyzer (Lucene's EnglishAnalyzer). The ``rrf``/``linear`` retrievers stay absent.
- Both refuse to run as root, so as root they run as ``nobody``. Elasticsearch 9
  needs Java 21+ (a Temurin JDK under /usr/lib/jvm); OpenSearch 2.19 needs Java 17.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

MAVEN = "https://repo1.maven.org/maven2"
ELASTICSEARCH_VERSION = "9.5.3"
OPENSEARCH_VERSION = "2.19.1"
OPENSEARCH_KNN_VERSION = "2.19.1.0"
ASM_VERSION = "9.7"
ANTLR_VERSION = "4.13.1"

# (maven path, sha256 or None where Maven Central publishes no checksum we pinned)
ARTIFACTS = {
    "elasticsearch.zip": (
        f"org/elasticsearch/distribution/integ-test-zip/elasticsearch/{ELASTICSEARCH_VERSION}/elasticsearch-{ELASTICSEARCH_VERSION}.zip",
        "bec49f3b8d00e75c8d1cec85c35298635ec9fbd3ae80ef5aeb6bc05abdb3db2d",
    ),
    "opensearch.zip": (
        f"org/opensearch/distribution/integ-test-zip/opensearch/{OPENSEARCH_VERSION}/opensearch-{OPENSEARCH_VERSION}.zip",
        "af7152d8b7f6f1cee09d47276b32b70479fe6dd8cdbb61213f84eb7f8098b261",
    ),
    "opensearch-knn.zip": (
        f"org/opensearch/plugin/opensearch-knn/{OPENSEARCH_KNN_VERSION}/opensearch-knn-{OPENSEARCH_KNN_VERSION}.zip",
        "eab8c9818865bc035212eab5068cdacae164baa09d4c152f49b736d6f6b0e85c",
    ),
    "lang-painless.jar": (
        f"org/opensearch/plugin/lang-painless/{OPENSEARCH_VERSION}/lang-painless-{OPENSEARCH_VERSION}.jar",
        None,
    ),
    "painless-spi.jar": (
        f"org/opensearch/plugin/opensearch-scripting-painless-spi/{OPENSEARCH_VERSION}/opensearch-scripting-painless-spi-{OPENSEARCH_VERSION}.jar",
        None,
    ),
    "analysis-common.jar": (
        f"org/opensearch/plugin/analysis-common/{OPENSEARCH_VERSION}/analysis-common-{OPENSEARCH_VERSION}.jar",
        None,
    ),
    "antlr4-runtime.jar": (f"org/antlr/antlr4-runtime/{ANTLR_VERSION}/antlr4-runtime-{ANTLR_VERSION}.jar", None),
    **{
        f"{name}.jar": (f"org/ow2/asm/{name}/{ASM_VERSION}/{name}-{ASM_VERSION}.jar", None)
        for name in ("asm", "asm-util", "asm-tree", "asm-commons", "asm-analysis")
    },
}

JAVA_17 = Path("/usr/lib/jvm/java-17-openjdk-amd64")
_STARTED: dict[int, subprocess.Popen] = {}  # nodes this process started, so stop() can reap them


def home() -> Path:
    """The cache. As root the nodes run as ``nobody``, who cannot enter /root: use /var/cache then."""
    default = Path("/var/cache") if os.geteuid() == 0 else Path.home() / ".cache"
    return Path(os.environ.get("RELEVANCE_ENGINES_HOME", default / "relevance-engines"))


def java_21_plus() -> Path:
    for candidate in sorted(Path("/usr/lib/jvm").glob("temurin-*-jdk*"), reverse=True):
        if (candidate / "bin" / "javac").exists():
            return candidate
    raise SystemExit("Elasticsearch 9 needs a JDK 21+ under /usr/lib/jvm (e.g. temurin-25-jdk-amd64)")


# A throwaway test node must not refuse work because the host's disk is full by the engine's
# measure ((total - available) / total, which counts root-reserved blocks): above the 90% high
# watermark Elasticsearch leaves a new index's shards unassigned (index creation times out) and
# OpenSearch blocks index creation outright (403 index_create_block_exception); one CI run failed
# 107 tests that way. A production cluster keeps these safeguards; this script only starts
# nodes for tests and local use.
DISK_SETTINGS = ("-E", "cluster.routing.allocation.disk.threshold_enabled=false")

ENGINES = {
    "elasticsearch": {
        "dir": f"elasticsearch-{ELASTICSEARCH_VERSION}",
        "bin": "bin/elasticsearch",
        "java_var": "ES_JAVA_HOME",
        "opts_var": "ES_JAVA_OPTS",
        "tmp_var": "ES_TMPDIR",
        "extra": ["-E", "xpack.security.enabled=false", "-E", "xpack.ml.enabled=false"],
    },
    "opensearch": {
        "dir": f"opensearch-{OPENSEARCH_VERSION}",
        "bin": "bin/opensearch",
        "java_var": "JAVA_HOME",
        "opts_var": "OPENSEARCH_JAVA_OPTS",
        "tmp_var": "OPENSEARCH_TMPDIR",
        "extra": [],
    },
}


def java_for(engine: str) -> Path:
    return java_21_plus() if engine == "elasticsearch" else JAVA_17


# ----------------------------------------------------------------- fetching
def download(name: str) -> Path:
    path, sha256 = ARTIFACTS[name]
    target = home() / "downloads" / name
    if target.exists() and (sha256 is None or _sha256(target) == sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    print(f"downloading {MAVEN}/{path}", file=sys.stderr)
    with urllib.request.urlopen(f"{MAVEN}/{path}", timeout=300) as response, tmp.open("wb") as handle:
        shutil.copyfileobj(response, handle)
    if sha256 is not None and _sha256(tmp) != sha256:
        tmp.unlink()
        raise SystemExit(f"checksum mismatch for {name}: expected {sha256}")
    os.replace(tmp, target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unzip(archive: Path, destination: Path) -> None:
    """Extract keeping Unix permissions (zipfile drops them; the bin/ scripts need +x)."""
    with zipfile.ZipFile(archive) as bundle:
        for info in bundle.infolist():
            extracted = Path(bundle.extract(info, destination))
            mode = info.external_attr >> 16
            if mode:
                extracted.chmod(mode & 0o777)


def prepare_opensearch(root: Path) -> None:
    unzip(download("opensearch.zip"), root)
    modules = root / ENGINES["opensearch"]["dir"] / "modules"
    painless, analysis = modules / "lang-painless", modules / "analysis-common"
    painless.mkdir(parents=True, exist_ok=True)
    analysis.mkdir(parents=True, exist_ok=True)
    for jar in (
        "lang-painless",
        "painless-spi",
        "antlr4-runtime",
        "asm",
        "asm-util",
        "asm-tree",
        "asm-commons",
        "asm-analysis",
    ):
        shutil.copy(download(f"{jar}.jar"), painless / f"{jar}.jar")
    shutil.copy(download("analysis-common.jar"), analysis / "analysis-common.jar")
    _descriptor(painless, "lang-painless", "org.opensearch.painless.PainlessPlugin", "Painless scripting language", "")
    (painless / "plugin-security.policy").write_text(
        'grant {\n  permission java.lang.RuntimePermission "createClassLoader";\n'
        '  permission java.lang.RuntimePermission "getClassLoader";\n};\n'
    )
    _descriptor(
        analysis,
        "analysis-common",
        "org.opensearch.analysis.common.CommonAnalysisPlugin",
        "Built-in analyzers",
        "lang-painless",
    )
    knn = download("opensearch-knn.zip")
    _run(
        [str(root / ENGINES["opensearch"]["dir"] / "bin" / "opensearch-plugin"), "install", "--batch", f"file://{knn}"],
        {"JAVA_HOME": str(JAVA_17)},
    )


def _descriptor(directory: Path, name: str, classname: str, description: str, extends: str) -> None:
    lines = [
        f"description={description}",
        f"version={OPENSEARCH_VERSION}",
        f"name={name}",
        f"classname={classname}",
        "java.version=11",
        f"opensearch.version={OPENSEARCH_VERSION}",
        f"extended.plugins={extends}",
        "has.native.controller=false",
    ]
    (directory / "plugin-descriptor.properties").write_text("\n".join(lines) + "\n")


ENGLISH_ANALYZER_JAVA = """package relevance.english;
@org.elasticsearch.plugin.NamedComponent("english")
public class EnglishAnalyzerFactory implements org.elasticsearch.plugin.analysis.AnalyzerFactory {
    public org.apache.lucene.analysis.Analyzer create() { return new org.apache.lucene.analysis.en.EnglishAnalyzer(); }
}
"""
# Lucene's EnglishAnalyzer with ASCII folding after lowercasing (what OpenSearch's custom
# analyzer in mappings/opensearch.json and the embedded engine do): "sofá" finds "sofa".
ENGLISH_FOLDED_ANALYZER_JAVA = """package relevance.english;
import org.apache.lucene.analysis.*;
@org.elasticsearch.plugin.NamedComponent("english_folded")
public class EnglishFoldedAnalyzerFactory implements org.elasticsearch.plugin.analysis.AnalyzerFactory {
    public Analyzer create() {
        return new Analyzer() {
            protected TokenStreamComponents createComponents(String field) {
                Tokenizer source = new org.apache.lucene.analysis.standard.StandardTokenizer();
                TokenStream result = new org.apache.lucene.analysis.en.EnglishPossessiveFilter(source);
                result = new LowerCaseFilter(result);
                result = new org.apache.lucene.analysis.miscellaneous.ASCIIFoldingFilter(result);
                result = new StopFilter(result, org.apache.lucene.analysis.en.EnglishAnalyzer.ENGLISH_STOP_WORDS_SET);
                result = new org.apache.lucene.analysis.en.PorterStemFilter(result);
                return new TokenStreamComponents(source, result);
            }
            protected TokenStream normalize(String field, TokenStream in) {
                return new org.apache.lucene.analysis.miscellaneous.ASCIIFoldingFilter(new LowerCaseFilter(in));
            }
        };
    }
}
"""


def prepare_elasticsearch(root: Path) -> None:
    unzip(download("elasticsearch.zip"), root)
    es_home = root / ENGINES["elasticsearch"]["dir"]
    jdk = java_21_plus()
    with tempfile.TemporaryDirectory() as build_dir:
        build = Path(build_dir)
        sources = build / "src" / "relevance" / "english"
        sources.mkdir(parents=True)
        (sources / "EnglishAnalyzerFactory.java").write_text(ENGLISH_ANALYZER_JAVA)
        (sources / "EnglishFoldedAnalyzerFactory.java").write_text(ENGLISH_FOLDED_ANALYZER_JAVA)
        lib = es_home / "lib"
        classpath = ":".join(
            str(jar)
            for pattern in (
                "elasticsearch-plugin-api-*.jar",
                "elasticsearch-plugin-analysis-api-*.jar",
                "lucene-core-*.jar",
                "lucene-analysis-common-*.jar",
            )
            for jar in lib.glob(pattern)
        )
        _run(
            [
                str(jdk / "bin" / "javac"),
                "--release",
                "21",
                "-d",
                str(build / "classes"),
                "-cp",
                classpath,
                *(str(source) for source in sorted(sources.glob("*.java"))),
            ],
            {},
        )
        jar = build / "english-analysis.jar"
        _run([str(jdk / "bin" / "jar"), "cf", str(jar), "-C", str(build / "classes"), "."], {})
        plugin_zip = build / "english-analysis.zip"
        with zipfile.ZipFile(plugin_zip, "w") as bundle:
            bundle.write(jar, "english-analysis.jar")
            bundle.writestr(
                "stable-plugin-descriptor.properties",
                "description=English analyzers (Lucene EnglishAnalyzer, and with ASCII folding)\nversion=1.0.0\nname=english-analysis\n"
                f"java.version=21\nelasticsearch.version={ELASTICSEARCH_VERSION}\n",
            )
            bundle.writestr(
                "named_components.json",
                json.dumps(
                    {
                        "org.elasticsearch.plugin.analysis.AnalyzerFactory": {
                            "english": "relevance.english.EnglishAnalyzerFactory",
                            "english_folded": "relevance.english.EnglishFoldedAnalyzerFactory",
                        }
                    }
                ),
            )
        _run(
            [str(es_home / "bin" / "elasticsearch-plugin"), "install", "--batch", f"file://{plugin_zip}"],
            {"ES_JAVA_HOME": str(jdk)},
        )


def _run(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed:\n{result.stdout}\n{result.stderr}")


def fetch(engine: str) -> Path:
    """Download and prepare ``engine`` once; later calls return the cached install."""
    root = home() / "installs" / engine
    marker = root / ".prepared"
    if marker.exists() and marker.read_text().split()[-1] == _recipe(engine):
        return root / ENGINES[engine]["dir"]
    shutil.rmtree(root, ignore_errors=True)  # none yet, or prepared by another recipe: rebuild
    root.mkdir(parents=True)
    (prepare_elasticsearch if engine == "elasticsearch" else prepare_opensearch)(root)
    marker.write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {_recipe(engine)}")
    return root / ENGINES[engine]["dir"]


def _recipe(engine: str) -> str:
    """What a prepared install depends on beyond its downloads: the code that prepares it."""
    preparer = prepare_elasticsearch if engine == "elasticsearch" else prepare_opensearch
    parts = [
        inspect.getsource(preparer),
        ENGLISH_ANALYZER_JAVA,
        ENGLISH_FOLDED_ANALYZER_JAVA,
        json.dumps(ENGINES[engine], default=str, sort_keys=True),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


# ------------------------------------------------------------ running nodes
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def state_path(name: str) -> Path:
    return home() / "run" / f"{name}.json"


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health?wait_for_status=yellow&timeout=1s", timeout=5) as response:
            return json.loads(response.read())["status"] in ("yellow", "green")
    except (OSError, ValueError, KeyError):
        return False


def index_creation_problem(url: str) -> str | None:
    """Create and drop a probe index, so that a node which is healthy but cannot create one
    (shards it will not assign, a cluster block) fails to start instead of failing every test
    that builds an index. A block the node applies later (OpenSearch's disk monitor acts after
    its first disk reading) is not caught here; DISK_SETTINGS prevents that one."""
    probe = f"{url}/relevance-start-probe"
    body = json.dumps({"settings": {"number_of_shards": 1, "number_of_replicas": 0}}).encode()
    create = urllib.request.Request(
        f"{probe}?wait_for_active_shards=1&timeout=30s",
        data=body,
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    drop = urllib.request.Request(probe, method="DELETE")
    try:
        with contextlib.suppress(urllib.error.HTTPError):  # one an interrupted start left behind
            urllib.request.urlopen(drop, timeout=60).close()
        with urllib.request.urlopen(create, timeout=60) as response:
            acknowledged = json.loads(response.read()).get("shards_acknowledged", False)
        urllib.request.urlopen(drop, timeout=60).close()
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:500]}"
    except (OSError, ValueError) as exc:
        return str(exc)
    return None if acknowledged else "its primary shard was not assigned within 30 s"


def start(
    engine: str, port: int | None, heap: str, timeout: float, *, name: str | None = None, run_dir: Path | None = None
) -> dict:
    """Start a node (``name`` defaults to the engine) and wait until it is healthy.

    Passing the ``run_dir`` of a stopped node restarts it on its old data.
    """
    name = name or engine
    if (state := read_state(name)) and healthy(state["url"]):
        return state
    install = fetch(engine)
    spec = ENGINES[engine]
    port = port or free_port()
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp(prefix=f"relevance-{name}-"))  # under /tmp: reachable by nobody
    for sub in ("data", "logs", "tmp"):
        (run_dir / sub).mkdir(exist_ok=True)
    user = _unprivileged_user()
    if user is not None:
        for path in [run_dir, *run_dir.iterdir()]:
            os.chown(path, user.pw_uid, user.pw_gid)
        subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(install)], check=True)
    env = {
        **os.environ,
        spec["java_var"]: str(java_for(engine)),
        spec["opts_var"]: f"-Xms{heap} -Xmx{heap}",
        spec["tmp_var"]: str(run_dir / "tmp"),
    }
    command = [
        str(install / spec["bin"]),
        *("-E", "discovery.type=single-node", "-E", "network.host=127.0.0.1", "-E", f"http.port={port}"),
        *(
            "-E",
            f"transport.port={free_port()}",
            "-E",
            f"path.data={run_dir / 'data'}",
            "-E",
            f"path.logs={run_dir / 'logs'}",
        ),
        *("-E", f"cluster.name=relevance-{name}"),
        *DISK_SETTINGS,
        *spec["extra"],
    ]
    with (run_dir / "stdout.log").open("ab") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            command,
            env=env,
            cwd=run_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **({"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}),
        )
    _STARTED[process.pid] = process
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    while not healthy(url):
        if process.poll() is not None:
            raise SystemExit(f"{engine} exited with {process.returncode}; see {run_dir / 'stdout.log'}")
        if time.monotonic() - started > timeout:
            _kill_group(process.pid)
            raise SystemExit(f"{engine} not healthy after {timeout:.0f} s; see {run_dir / 'stdout.log'}")
        time.sleep(0.25)
    problem = index_creation_problem(url)
    if problem is not None:
        _kill_group(process.pid)
        raise SystemExit(f"{engine} started but cannot create an index: {problem}; see {run_dir / 'logs'}")
    state = {
        "name": name,
        "engine": engine,
        "url": url,
        "pid": process.pid,
        "run_dir": str(run_dir),
        "version": ELASTICSEARCH_VERSION if engine == "elasticsearch" else OPENSEARCH_VERSION,
        "startup_seconds": round(time.monotonic() - started, 1),
    }
    state_path(name).parent.mkdir(parents=True, exist_ok=True)
    state_path(name).write_text(json.dumps(state, indent=2))
    return state


def _unprivileged_user() -> pwd.struct_passwd | None:
    return pwd.getpwnam("nobody") if os.geteuid() == 0 else None


def read_state(name: str) -> dict | None:
    try:
        return json.loads(state_path(name).read_text())
    except (FileNotFoundError, ValueError):
        return None


def _kill_group(pid: int, timeout: float = 30) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    process = _STARTED.pop(pid, None)
    if process is not None:  # started by this process: reap it, or it lingers as a zombie
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(pid, signal.SIGKILL)
            process.wait()
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)


def stop(name: str, *, keep_data: bool = False) -> bool:
    state = read_state(name)
    if state is None:
        return False
    _kill_group(state["pid"])
    if not keep_data:
        shutil.rmtree(state["run_dir"], ignore_errors=True)
    state_path(name).unlink(missing_ok=True)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = commands.add_parser("fetch", help="download and prepare (cached)")
    fetch_cmd.add_argument("engines", nargs="*", help=f"any of {list(ENGINES)} (default: all)")
    start_cmd = commands.add_parser("start", help="start a single node on loopback and wait until healthy")
    start_cmd.add_argument("engine", choices=list(ENGINES))
    start_cmd.add_argument("--port", type=int, help="HTTP port (default: a free one)")
    start_cmd.add_argument("--heap", default="512m")
    start_cmd.add_argument("--timeout", type=float, default=180)
    start_cmd.add_argument("--name", help="node name, for several nodes of one engine (default: the engine)")
    start_cmd.add_argument(
        "--run-dir", type=Path, help="restart on the data of a node stopped with --keep-data (its printed run dir)"
    )
    stop_cmd = commands.add_parser("stop", help="stop a node started here (its data is deleted unless --keep-data)")
    stop_cmd.add_argument("name", help="the engine, or the --name given to start")
    stop_cmd.add_argument("--keep-data", action="store_true", help="keep the node's run dir, for start --run-dir")
    commands.add_parser("status", help="JSON of the nodes started here and whether they answer")
    args = parser.parse_args()

    if args.command == "fetch":
        unknown = set(args.engines) - set(ENGINES)
        if unknown:
            parser.error(f"unknown engine(s) {sorted(unknown)}; choose from {list(ENGINES)}")
        for engine in args.engines or list(ENGINES):
            print(f"{engine}: {fetch(engine)}")
    elif args.command == "start":
        if args.run_dir is not None and not (args.run_dir / "data").is_dir():
            parser.error(f"--run-dir {args.run_dir} holds no node data (expected {args.run_dir / 'data'})")
        state = start(args.engine, args.port, args.heap, args.timeout, name=args.name, run_dir=args.run_dir)
        print(json.dumps(state))
    elif args.command == "stop":
        state = read_state(args.name)
        if not stop(args.name, keep_data=args.keep_data):
            print(f"{args.name}: not running")
        else:
            kept = f"; data kept in {state['run_dir']} (start --run-dir)" if args.keep_data else ""
            print(f"{args.name}: stopped{kept}")
    else:
        status = {}
        for path in sorted((home() / "run").glob("*.json")) if (home() / "run").exists() else []:
            state = json.loads(path.read_text())
            status[path.stem] = {**state, "healthy": healthy(state["url"])}
        print(json.dumps(status, indent=2))


if __name__ == "__main__":
    main()
