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
from mercure.dispatcher.targets.base import (
    Confirm,
    SendJob,
    SendResult,
    TargetPlugin,
    TestSteps,
)


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

    async def test(self, steps: TestSteps) -> str:
        """Credentials at hand, then HEAD the bucket with them."""
        return await asyncio.to_thread(self._test, steps)

    def _test(self, steps: TestSteps) -> str:
        config = self.config
        if config.access_key_id and config.secret_access_key:
            steps.ok("credentials", f"access key {config.access_key_id} with its secret")
        elif config.access_key_id or config.secret_access_key:
            missing = "secret_access_key" if config.access_key_id else "access_key_id"
            steps.fail("credentials", DeliveryError(f"{missing} is missing"))
        else:
            found = boto3.session.Session().get_credentials()
            if found is None:
                steps.warning("credentials", "none configured or in the environment: anonymous")
            else:
                steps.ok("credentials", f"from the environment ({found.method})")
        client = self._client()
        try:
            client.head_bucket(Bucket=config.bucket)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            steps.fail("bucket reachable (HEAD)", self._error(exc))
        where = f" at {config.endpoint_url}" if config.endpoint_url else ""
        steps.ok("bucket reachable (HEAD)", f"bucket {config.bucket}{where} answered")
        return f"S3 bucket {config.bucket} is reachable"
