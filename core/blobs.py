"""Blob store for large payloads: S3 (boto3, any S3-compatible endpoint) or a local directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def ping(self) -> None: ...

    def delete_prefix(self, prefix: str) -> int: ...


class FileBlobStore:
    """Blobs as files under a root directory; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"blob key escapes the store: {key!r}")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(path)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise OSError(f"blob dir {self.root} is not writable")

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob under ``prefix/`` (a project's payloads); returns how many."""
        folder = self._path(prefix.strip("/"))
        if folder == self.root.resolve() or not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder)
        return count


class S3BlobStore:
    """Blobs in an S3 bucket. ``s3://bucket/prefix?endpoint=http://host:port&region=us-east-1``."""

    def __init__(self, url: str):
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self._s3 = boto3.client(
            "s3",
            endpoint_url=query.get("endpoint"),
            region_name=query.get("region", "us-east-1"),
            aws_access_key_id=query.get("access_key") or os.environ.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=unquote(query["secret_key"]) if "secret_key" in query else os.environ.get("AWS_SECRET_ACCESS_KEY"),
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30,
                          max_pool_connections=32),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        return self._s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def ping(self) -> None:
        self._s3.head_bucket(Bucket=self.bucket)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob under ``prefix/`` (a project's payloads); returns how many."""
        if not prefix.strip("/"):
            return 0
        count = 0
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix.strip("/") + "/"))
        for page in pages:
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:  # a page holds at most 1,000 keys, as many as one delete_objects call takes
                self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                count += len(keys)
        return count

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except ClientError:
            self._s3.create_bucket(Bucket=self.bucket)


def open_blob_store(url: str) -> BlobStore:
    if url.startswith("s3://"):
        return S3BlobStore(url)
    return FileBlobStore(Path(urlsplit(url).path))
