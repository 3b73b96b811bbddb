"""Baseline: only fetch every GetAccountAuthorizationDetails page (User, Group) of each account.
The floor for a scan on moto, where building the response dominates. Prints the calls made.

usage: gaad_only.py URL FIRST_ACCOUNT ACCOUNTS
"""
import sys

from common import account_ids, iam_for

url, first, count = sys.argv[1:4]
calls = 0
for a in account_ids(first, int(count)):
    iam = iam_for(url, a)
    calls += 1
    kwargs = {"Filter": ["User", "Group"], "MaxItems": 1000}
    while True:
        page = iam.get_account_authorization_details(**kwargs)
        calls += 1
        if not page.get("IsTruncated"):
            break
        kwargs["Marker"] = page["Marker"]
print(calls)
