# The original JARVIS README's "3. Managing Service Status", as written; the registry
# URL comes from DNS_SERVER_URL. calculate_service_load and the main block are added,
# and this version registers first so that update_status has a service to update.
import asyncio

from dns_client import DNSClient, ServiceConfig


def calculate_service_load():
    return 93  # percent


async def service_status_management():
    dns_client = DNSClient()
    await dns_client.register_service(ServiceConfig("authentication-service", 1, port=5001))

    # Update service status based on load
    current_load = calculate_service_load()  # Your load calculation logic
    await dns_client.update_status(busy=(current_load > 80))

    # Handle cleanup on shutdown
    async def shutdown():
        print("Service shutting down...")
        await dns_client.close()
        print("Cleanup completed")

    await shutdown()


if __name__ == "__main__":
    asyncio.run(service_status_management())
