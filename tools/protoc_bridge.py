"""A protoc plugin that lets `buf generate` use grpc_tools' bundled generators.

buf runs plugins as executables speaking protoc's plugin protocol; grpcio-tools ships the
python, pyi and grpc_python generators only inside its own protoc. This bridge receives buf's
CodeGeneratorRequest, hands the same descriptors to grpc_tools.protoc with the generator named
by the first argument, and returns the files it wrote. It then rewrites the absolute imports of
our own protos (`from atoma.routing.v1 import ...`) so the generated package lives under
`atoma_proxy.generated` and cannot collide with an unrelated top-level `atoma` package.
"""

from __future__ import annotations

import pathlib
import re
import sys
import tempfile

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc

OWN_IMPORT = re.compile(r"^(from|import) atoma\.", re.MULTILINE)


def main() -> None:
    generator = sys.argv[1]
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    with tempfile.TemporaryDirectory() as tmp:
        descriptors = pathlib.Path(tmp, "descriptors.binpb")
        descriptors.write_bytes(descriptor_pb2.FileDescriptorSet(file=request.proto_file).SerializeToString())
        out = pathlib.Path(tmp, "out")
        out.mkdir()
        code = protoc.main(
            ["protoc", f"--descriptor_set_in={descriptors}", f"--{generator}_out={out}", *request.file_to_generate]
        )
        if code != 0:
            response.error = f"grpc_tools.protoc --{generator}_out failed with exit code {code}"
        for path in sorted(out.rglob("*.py*")):
            text = OWN_IMPORT.sub(r"\1 atoma_proxy.generated.atoma.", path.read_text())
            response.file.add(name=str(path.relative_to(out)), content=text)
    sys.stdout.buffer.write(response.SerializeToString())


if __name__ == "__main__":
    main()
