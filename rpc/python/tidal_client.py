# SPDX-License-Identifier: Apache-2.0
"""A small Python client of Tidal's gRPC API (tidal.v1.Inference, rpc/proto/tidal/v1).

The stubs are generated into the build tree (build/rpc/python: tidal/v1/inference_pb2*.py and
grpc_health/v1/health_pb2*.py); put that directory and this one on PYTHONPATH. Needs Debian's
python3-grpcio (which brings python3-protobuf).

    from tidal_client import TidalClient
    with TidalClient("127.0.0.1:50051") as tidal:
        for piece in tidal.generate("Once upon a time", max_new_tokens=64, temperature=0):
            print(piece.text, end="", flush=True)
        print(tidal.complete("Once upon a time", attention="tidal", budget=256).text)

Run as a script it streams one generation to the terminal:
    python3 rpc/python/tidal_client.py --server 127.0.0.1:50051 --prompt "Once upon a time"
"""

import argparse
import sys
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tidal.v1 import inference_pb2 as pb
from tidal.v1 import inference_pb2_grpc as pb_grpc

SERVICE_NAME = "tidal.v1.Inference"


@dataclass
class Completion:
    """A whole generation: its text, token ids and final message (finish, usage, stats)."""

    text: str = ""
    ids: List[int] = field(default_factory=list)
    final: Optional[pb.FinalMessage] = None

    @property
    def finish(self) -> str:
        return pb.FinishReason.Name(self.final.finish) if self.final else "NONE"


class TidalClient:
    """One channel to a Tidal server. Every call raises grpc.RpcError on failure (its .code()
    and .details() say why: INVALID_ARGUMENT with the bad field named, UNAUTHENTICATED, ...)."""

    def __init__(self, target: str, auth_token: Optional[str] = None,
                 timeout: Optional[float] = None):
        self._channel = grpc.insecure_channel(target)
        self._stub = pb_grpc.InferenceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._metadata: Tuple[Tuple[str, str], ...] = (
            (("authorization", "Bearer " + auth_token),) if auth_token else ())
        self._timeout = timeout

    def __enter__(self) -> "TidalClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def wait_ready(self, timeout: float = 30) -> None:
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    @staticmethod
    def request(prompt: Optional[str] = None, *, ids: Optional[Sequence[int]] = None,
                messages: Optional[Sequence[Tuple[str, str]]] = None, request_id: str = "",
                max_new_tokens: Optional[int] = None, temperature: Optional[float] = None,
                top_k: Optional[int] = None, top_p: Optional[float] = None,
                min_p: Optional[float] = None, seed: Optional[int] = None,
                stop: Sequence[str] = (), ignore_eos: bool = False, attention: str = "",
                budget: Optional[int] = None, granularity: str = "",
                sparse_start: Optional[int] = None,
                reselect_layers: Optional[Sequence[int]] = None, agreement: str = "",
                correction_interval: int = 0) -> pb.GenerateRequest:
        """A GenerateRequest: exactly one of prompt (text), ids or messages ((role, content)
        pairs); unset settings take the server's defaults (ModelInfo.defaults), and an unset
        seed is drawn per request (the final message's seed reports it)."""
        req = pb.GenerateRequest(request_id=request_id, correction_interval=correction_interval)
        if sum(x is not None for x in (prompt, ids, messages)) != 1:
            raise ValueError("give one of prompt, ids or messages")
        if prompt is not None:
            req.text = prompt
        elif ids is not None:
            req.ids.ids.extend(ids)
        else:
            req.chat.messages.extend(pb.ChatMessage(role=r, content=c) for r, c in messages)
        for name, value in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p),
                            ("min_p", min_p), ("seed", seed)):
            if value is not None:
                setattr(req.sampling, name, value)
        if max_new_tokens is not None:
            req.stop.max_new_tokens = max_new_tokens
        req.stop.stop_strings.extend(stop)
        req.stop.ignore_eos = ignore_eos
        req.attention.kind = attention
        req.attention.granularity = granularity
        req.attention.agreement = agreement
        if budget is not None:
            req.attention.budget = budget
        if sparse_start is not None:
            req.attention.sparse_start = sparse_start
        if reselect_layers is not None:
            req.attention.reselect_layers.SetInParent()
            req.attention.reselect_layers.layers.extend(reselect_layers)
        return req

    def stream(self, req: pb.GenerateRequest) -> Iterator[pb.GenerateResponse]:
        """The responses of one generation as they come (cancel() on the returned iterator
        cancels the call: the server frees the request at its next step)."""
        return self._stub.Generate(req, metadata=self._metadata, timeout=self._timeout)

    def generate(self, prompt: Optional[str] = None, **kwargs) -> Iterator[pb.GenerateResponse]:
        return self.stream(self.request(prompt, **kwargs))

    def complete(self, prompt: Optional[str] = None, **kwargs) -> Completion:
        out = Completion()
        for msg in self.generate(prompt, **kwargs):
            out.text += msg.text
            out.ids.extend(msg.token_ids)
            if msg.HasField("final"):
                out.final = msg.final
        return out

    def cancel(self, request_id: str) -> bool:
        return self._stub.Cancel(pb.CancelRequest(request_id=request_id),
                                 metadata=self._metadata, timeout=self._timeout).found

    def tokenize(self, text: Optional[str] = None, *,
                 messages: Optional[Sequence[Tuple[str, str]]] = None,
                 add_bos: Optional[bool] = None) -> List[int]:
        # add_bos: text only (None: the server's default, BOS added); given with messages the
        # server refuses it (INVALID_ARGUMENT) rather than this client dropping it.
        req = pb.TokenizeRequest()
        if messages is not None:
            req.chat.messages.extend(pb.ChatMessage(role=r, content=c) for r, c in messages)
        else:
            req.text = text or ""
        if add_bos is not None:
            req.add_bos = add_bos
        return list(self._stub.Tokenize(req, metadata=self._metadata, timeout=self._timeout).ids)

    def model_info(self) -> pb.ModelInfo:
        return self._stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=self._metadata,
                                       timeout=self._timeout)

    def stats(self) -> pb.Stats:
        return self._stub.GetStats(pb.GetStatsRequest(), metadata=self._metadata,
                                   timeout=self._timeout)

    def health(self, service: str = SERVICE_NAME) -> str:
        """grpc.health.v1 Check: "SERVING", "NOT_SERVING", ..."""
        resp = self._health.Check(health_pb2.HealthCheckRequest(service=service),
                                  timeout=self._timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Stream a generation from a Tidal server.")
    p.add_argument("--server", default="127.0.0.1:50051")
    p.add_argument("--auth-token")
    p.add_argument("--prompt", default="")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int,
                   help="sampling seed; default: a fresh one per request, drawn by the server")
    p.add_argument("--attention", default="full")
    p.add_argument("--budget", type=int)
    args = p.parse_args(argv)
    with TidalClient(args.server, args.auth_token) as tidal:
        try:
            final = None
            for msg in tidal.generate(args.prompt, max_new_tokens=args.max_new_tokens,
                                      temperature=args.temperature, seed=args.seed,
                                      attention=args.attention, budget=args.budget):
                sys.stdout.write(msg.text)
                sys.stdout.flush()
                if msg.HasField("final"):
                    final = msg.final
            print()
            if final is not None:
                print("tidal: finish %s, %d tokens, seed %d"
                      % (pb.FinishReason.Name(final.finish), final.usage.generated_tokens,
                         final.seed), file=sys.stderr)
        except grpc.RpcError as e:
            print("tidal: error: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
