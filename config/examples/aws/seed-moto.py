"""Creates the walk-through's IAM role in a local moto server (or any IAM endpoint).

    python seed-moto.py http://127.0.0.1:5000

payment-agent's role, reached through IRSA by ServiceAccount payments/payment-agent:
- managed policy payments-s3: s3:GetObject and s3:PutObject on every bucket (broader than the
  agent needs: it also grants the out-of-envelope write to partner-payouts);
- inline policy ledger-read: dynamodb:GetItem on the ledger table.
"""
import json
import sys

import boto3

endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5000"
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
issuer = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E"
trust = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow",
    "Principal": {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{issuer}"},
    "Action": "sts:AssumeRoleWithWebIdentity",
    "Condition": {"StringEquals": {f"{issuer}:sub": "system:serviceaccount:payments:payment-agent"}}}]}
iam.create_role(RoleName="payment-agent", AssumeRolePolicyDocument=json.dumps(trust))
s3 = iam.create_policy(PolicyName="payments-s3", PolicyDocument=json.dumps({
    "Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::*"}]}))
iam.attach_role_policy(RoleName="payment-agent", PolicyArn=s3["Policy"]["Arn"])
iam.put_role_policy(RoleName="payment-agent", PolicyName="ledger-read", PolicyDocument=json.dumps({
    "Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "dynamodb:GetItem",
        "Resource": "arn:aws:dynamodb:us-east-1:123456789012:table/ledger"}]}))
print("created role payment-agent with managed policy payments-s3 and inline policy ledger-read")
