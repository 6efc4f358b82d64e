# The original JARVIS README's "5. Complete Service Example", as written (FastAPI's
# on_event is deprecated; fastapi_service.py shows the lifespan form). The registry
# URL comes from DNS_SERVER_URL.
import uvicorn
from fastapi import FastAPI

from dns_client import DNSClient, ServiceConfig

app = FastAPI()
dns_client = None


@app.on_event("startup")
async def startup_event():
    global dns_client
    dns_client = DNSClient()

    config = ServiceConfig(
        service_type="user-service",
        instance_id=1,
        port=5001,
        metadata={"version": "1.0", "database": "postgres", "cache": "redis"},
    )

    success = await dns_client.register_service(config)
    if not success:
        raise Exception("Failed to register with DNS server")


@app.on_event("shutdown")
async def shutdown_event():
    if dns_client:
        await dns_client.close()


@app.get("/users/{user_id}")
async def get_user(user_id: int):
    # Your API logic here
    return {"user_id": user_id, "name": "John Doe"}


if __name__ == "__main__":
    uvicorn.run(app, host="0.0.0.0", port=5001)
