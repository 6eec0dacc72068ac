"""Generated gRPC / protobuf modules of the smpc.v1 wire contract.

Do not edit: regenerate with ``python scripts/gen_protos.py`` (see protos/smpc/v1/).
"""
