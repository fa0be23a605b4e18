"""Where the lake and the exports live: a local folder or an object store.

A location is a local path or an ``s3://bucket/prefix`` URI (``s3a://`` is read as
``s3://``). The S3 API covers AWS S3 and the S3-compatible stores (MinIO, Ceph,
Alibaba OSS, Cloudflare R2). Credentials and the endpoint come from the standard AWS
environment variables, read by every client the same way:

* ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``), or any
  other source of the AWS default credential chain (profile, instance role);
* ``AWS_REGION`` (``AWS_DEFAULT_REGION``);
* ``AWS_ENDPOINT_URL`` for a store that is not AWS (``http://minio:9000``); with an
  ``http://`` endpoint also ``AWS_ALLOW_HTTP=true`` (Sail and delta-rs refuse plain
  HTTP without it).

File operations here go through ``pyarrow.fs`` (``FileSystem.from_uri``), so a local
path keeps working unchanged; Delta tables are read and written by the engine and
delta-rs, which take the same variables (:func:`delta_storage_options`,
:func:`hadoop_s3a_conf`). Folders do not exist on an object store: a "folder" is a
key prefix, present when an object under it is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow.fs as pafs

REMOTE_SCHEMES = ("s3://", "s3a://")
DELTA_LOG = "_delta_log"


def is_remote(location: str | Path) -> bool:
    """Whether ``location`` is an object-store URI rather than a local path."""
    return str(location).startswith(REMOTE_SCHEMES)


def normalise(location: str | Path) -> str | Path:
    """A configured location: URIs as ``s3://`` text, local paths absolute ``Path``."""
    text = str(location)
    if text.startswith("s3a://"):
        return "s3://" + text[len("s3a://") :].rstrip("/")
    if is_remote(text):
        return text.rstrip("/")
    return Path(text).expanduser().absolute()


def join(base: str | Path, *parts: str) -> str:
    """``base/part/...`` as text (a URI stays a URI)."""
    out = str(base).rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def filesystem(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """The pyarrow file system of ``location`` and the path inside it."""
    text = str(normalise(location))
    if is_remote(text):
        return pafs.FileSystem.from_uri(text)
    return pafs.LocalFileSystem(), text


def exists(location: str | Path) -> bool:
    fs, path = filesystem(location)
    # On S3 a prefix with objects under it reads as a directory.
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_text(location: str | Path) -> str | None:
    """The file's text (UTF-8), or None when there is no such file."""
    fs, path = filesystem(location)
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read().decode("utf-8")
    except FileNotFoundError:
        return None


def write_text(location: str | Path, text: str) -> None:
    """Write a small file so that readers see the old or the new content, never half.

    Local: write a temporary file, then rename. Object store: one PUT (atomic by itself).
    """
    fs, path = filesystem(location)
    if not is_remote(location):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(path).with_name(f".{Path(path).name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return
    with fs.open_output_stream(path) as out:
        out.write(text.encode("utf-8"))


def make_dirs(location: str | Path) -> None:
    """Create a local folder (no-op on an object store, where prefixes need no creation)."""
    if not is_remote(location):
        Path(location).mkdir(parents=True, exist_ok=True)


def _s3_object(location: str | Path):
    """(boto3 S3 client, bucket, key) of an ``s3://`` location; the client takes the
    endpoint, region and credentials from the AWS_* variables."""
    import boto3

    bucket, _, key = str(normalise(location)).removeprefix("s3://").partition("/")
    return boto3.client("s3"), bucket, key


def remove_tree(location: str | Path) -> None:
    """Delete a folder (every object under a prefix) and everything in it; missing is fine."""
    if not is_remote(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    # Deleted key by key (not pyarrow's delete_dir, which leaves an empty marker object
    # for the parent "folder" behind).
    client, bucket, prefix = _s3_object(location)
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix.rstrip("/") + "/"
    ):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def remove_file(location: str | Path) -> None:
    if not is_remote(location):
        Path(location).unlink(missing_ok=True)
        return
    client, bucket, key = _s3_object(location)
    client.delete_object(Bucket=bucket, Key=key)


def list_dir(location: str | Path) -> list[tuple[str, bool]]:
    """``(name, is_folder)`` of the entries directly under ``location``, sorted; [] if none."""
    fs, path = filesystem(location)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted((i.base_name, i.type == pafs.FileType.Directory) for i in infos)


def delta_tables(root: str | Path) -> list[str]:
    """Every Delta table ``<root>/<layer>/<table>`` as ``layer/table``, found by its log.

    Two listings per layer instead of a recursive walk: on an object store a table's
    data files (thousands of keys) are never listed.
    """
    found = []
    for layer, is_folder in list_dir(root):
        if not is_folder or layer.startswith(("_", ".")):
            continue
        for table, is_table_folder in list_dir(join(root, layer)):
            if is_table_folder and exists(join(root, layer, table, DELTA_LOG)):
                found.append(f"{layer}/{table}")
    return found


def _upload_file(local: Path, fs: pafs.FileSystem, path: str) -> None:
    with open(local, "rb") as src, fs.open_output_stream(path) as dst:
        shutil.copyfileobj(src, dst, 8 << 20)


def download_tree(location: str | Path, local: Path) -> None:
    """Copy every file under ``location`` into the local folder ``local``."""
    fs, path = filesystem(location)
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True)):
        if info.type != pafs.FileType.File:
            continue
        target = local / info.path[len(path) :].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(info.path) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 8 << 20)


def _snapshot(local: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(local).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in local.rglob("*")
        if p.is_file()
    }


def _sync_folder(local: Path, location: str, before: dict[str, tuple[int, int]]) -> None:
    """Make ``location`` hold what ``local`` holds, changing only what changed.

    A folder's ``_SUCCESS`` marker (a reader's sign that the folder is complete) is
    deleted before its other objects change and written after them."""
    fs, path = filesystem(location)
    after = _snapshot(local)
    changed = [k for k, v in after.items() if before.get(k) != v]
    gone = [k for k in before if k not in after]
    touched_folders = {k.rpartition("/")[0] for k in changed + gone}
    for folder in sorted(touched_folders):
        marker = f"{folder}/_SUCCESS".lstrip("/")
        if marker in before:
            remove_file(join(location, marker))
    for key in sorted(k for k in changed if not k.endswith("_SUCCESS")):
        _upload_file(local / key, fs, f"{path}/{key}")
    for key in gone:
        remove_file(join(location, key))
    for folder in sorted(touched_folders):
        marker = f"{folder}/_SUCCESS".lstrip("/")
        if marker in after:
            _upload_file(local / marker, fs, f"{path}/{marker}")


@contextlib.contextmanager
def local_copy(location: str | Path, only: Iterable[str] | None = None) -> Iterator[Path]:
    """A local folder standing for ``location`` for the block (for file-by-file writers).

    Local locations are given as they are. For an object store, the sub-folders named
    in ``only`` (everything when None) are downloaded into a temporary folder; when
    the block ends without an error, every file added, changed or deleted there is
    uploaded or deleted under ``location`` (``_SUCCESS`` markers last), and the
    temporary folder goes. A block that fails changes nothing in the store.
    """
    if not is_remote(location):
        yield Path(location)
        return
    with tempfile.TemporaryDirectory(prefix="cdp-objstore-") as tmp:
        local = Path(tmp)
        for sub in [""] if only is None else only:
            download_tree(join(location, sub) if sub else location, local / sub)
        before = _snapshot(local)
        yield local
        _sync_folder(local, str(normalise(location)), before)


# ---- engines -----------------------------------------------------------------------------

_ENV_TO_DELTA_RS = {
    "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN": "AWS_SESSION_TOKEN",
    "AWS_REGION": "AWS_REGION",
    "AWS_ALLOW_HTTP": "AWS_ALLOW_HTTP",
}


def delta_storage_options(location: str | Path) -> dict[str, str] | None:
    """delta-rs ``storage_options`` for ``location`` from the AWS_* variables (None: local).

    delta-rs reads the same variables itself; passing them makes the dependency
    explicit and lets a caller change the environment after import."""
    if not is_remote(location):
        return None
    env = os.environ
    options = {dst: env[src] for src, dst in _ENV_TO_DELTA_RS.items() if env.get(src)}
    if "AWS_REGION" not in options and env.get("AWS_DEFAULT_REGION"):
        options["AWS_REGION"] = env["AWS_DEFAULT_REGION"]
    return options


def hadoop_s3a_conf(env: dict[str, str] | None = None) -> dict[str, str]:
    """``spark.hadoop.fs.s3a.*`` settings for a JVM Spark from the AWS_* variables.

    ``s3://`` is served by the S3A file system too, so one URI works on every engine.
    Credentials are left to S3A's default chain, which reads AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY from the environment (never written into Spark's config)."""
    env = os.environ if env is None else env
    conf = {
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    }
    endpoint = env.get("AWS_ENDPOINT_URL")
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(
            endpoint.startswith("https://")
        ).lower()
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = region
    return conf
