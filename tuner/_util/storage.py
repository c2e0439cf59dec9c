"""Where a sweep's files live: a local (or shared) directory, or a prefix in a bucket (``s3://``, ``gs://``) reached
through pyarrow's filesystem layer, the one Ray Tune and Ray Train write through.

For a bucket, Ray writes Tune's experiment and every checkpoint there itself (``storage_filesystem``); the driver
keeps its own files (the saved spec, the budget ledger, summary.json, the leaderboard, ``best_model/``, report.html)
in a local mirror of the sweep's prefix, ``$TUNER_CACHE`` (default ``~/.cache/tuner``) ``/buckets/<scheme>/<bucket>/
<prefix>``, and copies each to the bucket when it writes it, so the bucket alone holds the whole sweep.

Credentials come only from the environment or the cloud SDK's usual chain (``AWS_ACCESS_KEY_ID``, profiles, instance
roles; ``GOOGLE_APPLICATION_CREDENTIALS``): never from the spec, and they are never logged. An S3-compatible server is
named by ``storage_endpoint`` in the spec or by ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SCHEMES = ("s3", "gs")
# S3 requests retry with AWS's standard backoff: 10 attempts ride out about a minute of an unreachable endpoint (a
# trial's report waits for its checkpoint's upload meanwhile) before an upload fails and the trial with it.
RETRY_ATTEMPTS = 10
CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                   "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


class StorageError(Exception):
    """A bucket that cannot be used: unreachable, missing, or no credentials. The message names the URI."""


def is_remote(storage: str) -> bool:
    return "://" in storage


def malformed(storage: str) -> str | None:
    """Why ``storage`` is not a usable location (None when it is): a spec error, found without any network call."""
    if not is_remote(storage):
        return None
    parts = urlsplit(storage)
    if parts.scheme not in SCHEMES:
        return f"{storage!r}: unsupported scheme {parts.scheme!r} (use a local path, s3://bucket/prefix or gs://...)"
    if not parts.netloc or parts.query or parts.fragment or "//" in parts.path:
        return f"{storage!r}: expected {parts.scheme}://<bucket>/<prefix>"
    return None


def fs_path(path: str) -> str:
    """A path as a pyarrow filesystem names it: a bucket URI without its scheme (``<bucket>/<key>``)."""
    return path.split("://", 1)[-1]


def endpoint_of(endpoint: str | None) -> tuple[str, str] | None:
    """(host:port, scheme) of an S3-compatible endpoint URL (the spec's, else AWS_ENDPOINT_URL), or None for AWS."""
    url = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not url:
        return None
    parts = urlsplit(url if "://" in url else f"https://{url}")
    return parts.netloc, parts.scheme or "https"


@dataclass(frozen=True)
class Bucket:
    """A prefix in a bucket: ``uri`` is ``<scheme>://<bucket>/<prefix>`` (no trailing slash)."""

    uri: str
    endpoint: str | None = None

    @property
    def scheme(self) -> str:
        return urlsplit(self.uri).scheme

    @property
    def path(self) -> str:
        """The prefix as pyarrow's filesystems name it: ``<bucket>/<prefix>``."""
        return fs_path(self.uri).rstrip("/")

    @property
    def bucket(self) -> str:
        return urlsplit(self.uri).netloc

    def child(self, *names: str) -> Bucket:
        return Bucket("/".join([self.uri, *names]), self.endpoint)

    def filesystem(self, attempts: int = RETRY_ATTEMPTS) -> Any:
        import pyarrow.fs as pafs

        if self.scheme == "gs":
            return pafs.GcsFileSystem(retry_time_limit=timedelta(seconds=60 if attempts > 2 else 5))
        kwargs: dict[str, Any] = {"connect_timeout": 10, "request_timeout": 60}
        endpoint = endpoint_of(self.endpoint)
        if endpoint:
            kwargs["endpoint_override"], kwargs["scheme"] = endpoint
        return _s3(attempts, kwargs)

    def mirror(self) -> Path:
        """The local directory the driver keeps this prefix's own files in."""
        root = Path(os.environ.get("TUNER_CACHE") or Path.home() / ".cache" / "tuner")
        return root / "buckets" / self.scheme / self.path

    # --- checks ---------------------------------------------------------------------------------------------------

    def check(self) -> None:
        """Fail now, in one line naming the URI, if the bucket cannot be used: no credentials, the endpoint
        unreachable, or the bucket missing."""
        import pyarrow.fs as pafs

        if self.scheme == "s3" and not _aws_credentials():
            raise StorageError(f"{self.uri}: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                               f"or AWS_PROFILE, or run where an instance role provides them)")
        try:
            info = self.filesystem(attempts=2).get_file_info(self.bucket)
        except OSError as e:
            raise StorageError(f"{self.uri}: {_reason(str(e), self.endpoint)}") from None
        if info.type == pafs.FileType.NotFound:
            raise StorageError(f"{self.uri}: bucket {self.bucket!r} does not exist")

    # --- files ----------------------------------------------------------------------------------------------------

    def exists(self, name: str = "") -> bool:
        import pyarrow.fs as pafs

        return self.filesystem().get_file_info(self._at(name)).type != pafs.FileType.NotFound

    def is_empty(self) -> bool:
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=False)
        return not self.filesystem().get_file_info(selector)

    def upload(self, local: Path, name: str) -> None:
        """Copy a local file or directory to ``<prefix>/<name>`` (a directory replaces what was there)."""
        import pyarrow.fs as pafs

        fs, dest = self.filesystem(), self._at(name)
        if local.is_dir():
            fs.delete_dir_contents(dest, missing_dir_ok=True)
            pafs.copy_files(str(local), dest, destination_filesystem=fs)
        else:
            with local.open("rb") as src, fs.open_output_stream(dest) as out:
                shutil.copyfileobj(src, out)

    def download(self, name: str, local: Path) -> bool:
        """Copy ``<prefix>/<name>`` (a file or a directory) to ``local``; False when it is not there."""
        import pyarrow.fs as pafs

        fs, src = self.filesystem(), self._at(name)
        kind = fs.get_file_info(src).type
        if kind == pafs.FileType.NotFound:
            return False
        local.parent.mkdir(parents=True, exist_ok=True)
        if kind == pafs.FileType.Directory:
            local.mkdir(exist_ok=True)
            pafs.copy_files(src, str(local), source_filesystem=fs)
            return True
        fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.")
        with os.fdopen(fd, "wb") as out, fs.open_input_stream(src) as inp:
            shutil.copyfileobj(inp, out)
        os.replace(tmp, local)
        return True

    def delete(self, name: str) -> None:
        import pyarrow.fs as pafs

        fs, path = self.filesystem(), self._at(name)
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.Directory:
            fs.delete_dir(path)
        elif kind == pafs.FileType.File:
            fs.delete_file(path)

    def _at(self, name: str) -> str:
        return f"{self.path}/{name}".rstrip("/") if name else self.path


def _s3(attempts: int, kwargs: dict[str, Any]) -> Any:
    """pyarrow's S3FileSystem with AWS's standard retries, whose settings survive pickling: Ray ships the storage
    filesystem to every trial, and pyarrow's own pickle drops the retry strategy and timeouts. Credentials are never
    part of it: each process reads them from its environment."""
    import pyarrow.fs as pafs

    class RetryingS3FileSystem(pafs.S3FileSystem):
        def __reduce__(self) -> Any:
            return _s3, (attempts, kwargs)

    return RetryingS3FileSystem(retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=attempts), **kwargs)


def _aws_credentials() -> bool:
    """Whether the AWS chain can find credentials without asking the network: the environment, a profile file, or
    (unless AWS_EC2_METADATA_DISABLED) an instance role we cannot see from here."""
    if any(os.environ.get(v) for v in CREDENTIAL_VARS):
        return True
    for var, default in (("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), ("AWS_CONFIG_FILE", "~/.aws/config")):
        if Path(os.environ.get(var) or default).expanduser().is_file():
            return True
    return os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true"


def _reason(message: str, endpoint: str | None) -> str:
    """pyarrow's AWS error, in words."""
    if "NETWORK_CONNECTION" in message or "Could not connect" in message or "resolve host" in message:
        where = endpoint_of(endpoint)
        return f"cannot reach the storage endpoint{f' {where[0]}' if where else ''}"
    if "ACCESS_DENIED" in message or "403" in message or "InvalidAccessKeyId" in message:
        return "access denied (check the credentials in the environment)"
    return message.splitlines()[0] if message else "storage error"
