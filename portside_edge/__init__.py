"""What runs in front of the Lambda: the CloudFront origin-response function and the API
Gateway gateway-response definitions the stack and the local gateway share.

Standard library only: this directory is the Lambda@Edge asset as it is (no build step, no
dependencies, no environment variables, which Lambda@Edge does not support).
"""
