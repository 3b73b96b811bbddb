"""Seeds moto accounts for the benchmarks.

Per account: GROUPS groups, each with its own customer-managed policy; USERS users, each in one
group; the first REDUNDANT users also hold their group's policy directly (redundant), and every
user holds one direct-only policy.

usage: seed_moto.py URL FIRST_ACCOUNT ACCOUNTS USERS REDUNDANT [GROUPS]
"""
import json
import sys
from concurrent.futures import ThreadPoolExecutor

from common import account_ids, iam_for

DOC = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]})


def seed(url, account, users, redundant, groups):
    iam = iam_for(url, account, "bench-seed")
    grant = []
    for g in range(groups):
        arn = iam.create_policy(PolicyName=f"Grant{g:03}", PolicyDocument=DOC)["Policy"]["Arn"]
        iam.create_group(GroupName=f"group{g:03}")
        iam.attach_group_policy(GroupName=f"group{g:03}", PolicyArn=arn)
        grant.append(arn)
    own = iam.create_policy(PolicyName="DirectOnly", PolicyDocument=DOC)["Policy"]["Arn"]

    def user(i):
        name = f"user{i:05}"
        g = i % groups
        iam.create_user(UserName=name)
        iam.add_user_to_group(GroupName=f"group{g:03}", UserName=name)
        iam.attach_user_policy(UserName=name, PolicyArn=own)
        if i < redundant:
            iam.attach_user_policy(UserName=name, PolicyArn=grant[g])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(user, range(users)))


if __name__ == "__main__":
    url, first, count, users, redundant = sys.argv[1:6]
    groups = int(sys.argv[6]) if len(sys.argv) > 6 else 10
    for a in account_ids(first, int(count)):
        seed(url, a, int(users), int(redundant), groups)
        print(f"seeded {a}", file=sys.stderr)
