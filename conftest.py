"""Shared fixtures (real PostgreSQL, RabbitMQ, local DynamoDB and S3) for every package."""

pytest_plugins = ["common.testing"]
