"""Seeds a small demo organization in moto: three accounts with a mix of redundant and
direct-only attachments, and a break-glass user that accounts.toml excludes.

usage: seed.py ENDPOINT_URL ACCOUNT_ID...
"""
import json
import sys

import boto3

READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
VIEW_ONLY = "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"
DOC = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]})


def iam_for(url, account):
    sts = boto3.client("sts", endpoint_url=url, region_name="us-east-1")
    c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/demo-seed",
                        RoleSessionName="demo-seed")["Credentials"]
    return boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=c["AccessKeyId"],
                        aws_secret_access_key=c["SecretAccessKey"],
                        aws_session_token=c["SessionToken"])


def seed(iam, n):
    deploy = iam.create_policy(PolicyName="Deploy", Path="/platform/",
                               PolicyDocument=DOC)["Policy"]["Arn"]
    groups = {"developers": [VIEW_ONLY, deploy], "operators": [READ_ONLY, deploy], "auditors": []}
    for g, policies in groups.items():
        iam.create_group(GroupName=g)
        for p in policies:
            iam.attach_group_policy(GroupName=g, PolicyArn=p)
    users = {
        "alice": (["developers"], [VIEW_ONLY, deploy]),            # 2 redundant
        "bob": (["operators", "developers"], [READ_ONLY, deploy]),  # 2 redundant (deploy twice)
        "carol": (["auditors"], [READ_ONLY]),                      # direct-only
        "break-glass-admin": (["operators"], [READ_ONLY]),         # excluded in accounts.toml
        f"svc-ci-{n}": ([], [deploy]),                             # direct-only
    }
    for u, (member_of, policies) in users.items():
        iam.create_user(UserName=u)
        for g in member_of:
            iam.add_user_to_group(GroupName=g, UserName=u)
        for p in policies:
            iam.attach_user_policy(UserName=u, PolicyArn=p)


def state(iam):
    """Every direct attachment, membership and group policy, for the final check."""
    out = {}
    for u in iam.list_users()["Users"]:
        name = u["UserName"]
        out[f"user:{name}:policies"] = sorted(
            p["PolicyArn"] for p in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"])
        out[f"user:{name}:groups"] = sorted(
            g["GroupName"] for g in iam.list_groups_for_user(UserName=name)["Groups"])
    for g in iam.list_groups()["Groups"]:
        name = g["GroupName"]
        out[f"group:{name}"] = sorted(
            p["PolicyArn"] for p in iam.list_attached_group_policies(GroupName=name)["AttachedPolicies"])
    return out


if __name__ == "__main__":
    mode, url, accounts = sys.argv[1], sys.argv[2], sys.argv[3:]
    if mode == "seed":
        for i, a in enumerate(accounts):
            seed(iam_for(url, a), i)
            print(f"  seeded account {a}")
    elif mode == "state":
        print(json.dumps({a: state(iam_for(url, a)) for a in accounts}, indent=1, sort_keys=True))
    else:
        sys.exit(f"unknown mode {mode}")
