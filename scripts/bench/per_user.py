"""Baseline: the naive scan, listing per user (ListUsers, then ListAttachedUserPolicies and
ListGroupsForUser for each user, ListAttachedGroupPolicies per group). Prints the calls made.

usage: per_user.py URL FIRST_ACCOUNT ACCOUNTS
"""
import sys

from common import account_ids, iam_for

url, first, count = sys.argv[1:4]
calls = 0
for a in account_ids(first, int(count)):
    iam = iam_for(url, a)
    calls += 1
    users = []
    for page in iam.get_paginator("list_users").paginate():
        calls += 1
        users += [u["UserName"] for u in page["Users"]]
    groups = {}
    for u in users:
        iam.list_attached_user_policies(UserName=u)
        calls += 1
        for g in iam.list_groups_for_user(UserName=u)["Groups"]:
            groups.setdefault(g["GroupName"], None)
        calls += 1
    for g in groups:
        iam.list_attached_group_policies(GroupName=g)
        calls += 1
print(calls)
