# The original JARVIS README's "2. Advanced Service Discovery", as written; the
# registry URL comes from DNS_SERVER_URL. Only the last two lines are added, to run it.
import asyncio

from dns_client import DNSClient


async def discover_services():
    dns_client = DNSClient()

    # Discover service with specific requirements
    auth_service = await dns_client.discover_service(
        service_type="authentication-service",
        requirements={"version": "1.0", "capabilities": ["oauth"], "busy": False},
    )

    if auth_service:
        print(f"Found service instance: {auth_service}")


if __name__ == "__main__":
    asyncio.run(discover_services())
