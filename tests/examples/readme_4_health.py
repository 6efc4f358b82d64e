# The original JARVIS README's "4. Health Check Implementation". The README forgot
# `import time`; it is added here. A client with ServiceConfig(health_path="/health")
# reads "busy" from this answer.
import time

import psutil
from fastapi import FastAPI

app = FastAPI()


@app.get("/health")
async def health_check():
    # Example health check endpoint
    cpu_percent = psutil.cpu_percent()
    memory_percent = psutil.virtual_memory().percent

    return {
        "status": "healthy",
        "busy": cpu_percent > 80 or memory_percent > 90,
        "metrics": {
            "cpu_usage": cpu_percent,
            "memory_usage": memory_percent,
            "timestamp": time.time(),
        },
    }
