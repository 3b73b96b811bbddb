"""Shared by the benchmark scripts: IAM clients scoped to moto accounts."""
import boto3
from botocore.config import Config

CONFIG = Config(retries={"max_attempts": 10, "mode": "standard"}, max_pool_connections=32)


def iam_for(url, account, session="bench"):
    sts = boto3.client("sts", endpoint_url=url, region_name="us-east-1", config=CONFIG)
    c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/IamSweepRole",
                        RoleSessionName=session)["Credentials"]
    return boto3.client("iam", endpoint_url=url, region_name="us-east-1", config=CONFIG,
                        aws_access_key_id=c["AccessKeyId"],
                        aws_secret_access_key=c["SecretAccessKey"],
                        aws_session_token=c["SessionToken"])


def account_ids(first, count):
    return [str(int(first) + i).zfill(12) for i in range(count)]
