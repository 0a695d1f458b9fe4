"""The ``s3`` target (boto3): each instance to ``<prefix><task_id>/<file>`` in the bucket.

An S3 object appears atomically when its upload completes, so no temporary names are needed.
``endpoint_url`` points at S3-compatible stores (MinIO, Ceph, ...).
"""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from mercure.core.config.models import S3Target
from mercure.dispatcher.errors import DeliveryError
from mercure.dispatcher.targets.base import Confirm, SendJob, SendResult, TargetPlugin


class S3Plugin(TargetPlugin):
    """Uploads objects to a bucket."""

    def __init__(self, name: str, config: S3Target) -> None:
        super().__init__(name)
        self.config = config

    def _client(self) -> Any:
        config = self.config
        secret = config.secret_access_key.get_secret_value() if config.secret_access_key else None
        return boto3.session.Session().client(
            "s3",
            region_name=config.region,
            endpoint_url=config.endpoint_url,
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=secret,
            config=Config(connect_timeout=15, read_timeout=120, retries={"max_attempts": 2}),
        )

    def _error(self, exc: Exception) -> DeliveryError:
        where = f"bucket {self.config.bucket}" + (
            f" at {self.config.endpoint_url}" if self.config.endpoint_url else ""
        )
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "?"), error.get("Message", "")
            return DeliveryError(f"S3 {where}: {code} {message}".rstrip())
        return DeliveryError(f"S3 {where}: {exc}")

    async def send(self, job: SendJob, confirm: Confirm) -> SendResult:
        """Upload the pending files."""
        return await asyncio.to_thread(self._send, job, confirm)

    def _send(self, job: SendJob, confirm: Confirm) -> SendResult:
        client = self._client()
        try:
            for path in job.files:
                key = f"{self.config.prefix}{job.task_id}/{path.name}"
                client.upload_file(str(path), self.config.bucket, key)
                confirm(path, path.stat().st_size)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc) from exc
        except boto3.exceptions.S3UploadFailedError as exc:
            raise self._error(exc) from exc
        return SendResult()

    async def test(self) -> str:
        """HEAD the bucket with the configured credentials."""
        return await asyncio.to_thread(self._test)

    def _test(self) -> str:
        try:
            self._client().head_bucket(Bucket=self.config.bucket)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc) from exc
        return f"S3 bucket {self.config.bucket} is reachable"
