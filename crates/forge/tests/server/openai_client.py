"""The official `openai` Python client against a running `serve`: chat
whole and streamed, a text completion, the model list and two refused
requests. Prints one JSON report on stdout for the Rust test to check.

Usage: python3 openai_client.py BASE_URL MODEL
"""

import json
import sys
import time

import openai
from openai import OpenAI


def main() -> None:
    base_url, model = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=600)
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    report = {"models": [m.id for m in client.models.list()]}

    whole = client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=12
    )
    report["chat"] = {
        "content": whole.choices[0].message.content,
        "finish_reason": whole.choices[0].finish_reason,
        "usage": whole.usage.model_dump(),
    }

    start = time.monotonic()
    arrivals, pieces, finish, usage = [], [], None, None
    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        temperature=0,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
                arrivals.append(time.monotonic() - start)
            if choice.finish_reason is not None:
                finish = choice.finish_reason
    report["stream"] = {
        "content": "".join(pieces),
        "pieces": len(pieces),
        "arrivals": arrivals,
        "finish_reason": finish,
        "usage": usage,
    }

    completion = client.completions.create(
        model=model, prompt="The capital of France is", temperature=0, max_tokens=6
    )
    report["completion"] = {
        "text": completion.choices[0].text,
        "finish_reason": completion.choices[0].finish_reason,
    }

    errors = {}
    try:
        client.chat.completions.create(model="no-such-model", messages=messages)
    except openai.NotFoundError as e:
        errors["unknown_model"] = {"status": e.status_code, "message": e.message}
    try:
        client.chat.completions.create(model=model, messages=messages, temperature=-1)
    except openai.BadRequestError as e:
        errors["bad_temperature"] = {"status": e.status_code, "message": e.message}
    report["errors"] = errors
    print(json.dumps(report))


if __name__ == "__main__":
    main()
