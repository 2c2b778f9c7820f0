"""WoVR policy server: FastAPI/uvicorn serving of policy checkpoints (``wovr serve``).

Robot side, torch-free: :mod:`policy_server.client` (WebSocket/HTTP clients), :mod:`policy_server.broker`
(one action per control step from action chunks) and :mod:`policy_server.protocol` (msgpack-numpy wire format).
Server side: :mod:`policy_server.app`, :mod:`policy_server.worker`, :mod:`policy_server.checkpoints`.
Nothing is imported here, so the robot side never pulls in the server's dependencies.
"""
