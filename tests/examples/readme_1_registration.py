# The original JARVIS README's "1. Basic Service Registration", as written, with a
# local URL. tests/test_client_examples.py runs it against a real jarvis-dns.
import asyncio

from dns_client import DNSClient, ServiceConfig


async def main():
    # Initialize DNS client
    dns_client = DNSClient(dns_url="http://127.0.0.1:9000", base_port=5000)

    # Create service configuration
    config = ServiceConfig(
        service_type="authentication-service",
        instance_id=1,
        port=5001,
        metadata={"version": "1.0", "capabilities": ["oauth", "jwt"], "max_connections": 1000},
    )

    # Register service
    success = await dns_client.register_service(config)
    print(f"Service registration {'successful' if success else 'failed'}")

    # Keep the service running
    try:
        while True:
            await asyncio.sleep(1)
    except KeyboardInterrupt:
        await dns_client.close()


if __name__ == "__main__":
    asyncio.run(main())
