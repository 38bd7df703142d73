"""Unit tests of the pure parts and the OpenAI layer, on a small untrained model (no files, no Ray).

.venv/bin/python python/gpumesh_models/test_units.py
"""

import base64
import json
import struct
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from gpumesh_models import openai_api  # noqa: E402
from gpumesh_models.artifacts import check_expected_sha256, parse_sha256_file  # noqa: E402
from gpumesh_models.char_transformer import CharTransformer  # noqa: E402
from gpumesh_models.errors import ModelFormatError  # noqa: E402
from gpumesh_models.model_format import parse_config  # noqa: E402
from gpumesh_models.openai_api import ApiError, ResponseIdentity  # noqa: E402
from gpumesh_models.runtime import LoadedModel, SamplingOptions  # noqa: E402
from gpumesh_models.stop_sequences import StopSequenceFilter  # noqa: E402
from gpumesh_models.train_tiny import base_config  # noqa: E402


def small_model() -> LoadedModel:
    raw = base_config("unit-test", "0.0.1")
    raw["hyperparameters"] = {"layers": 1, "d_model": 16, "heads": 2, "d_ff": 32}
    raw["context_length"] = 64
    raw["max_output_tokens"] = 40
    config = parse_config(raw)
    torch.manual_seed(0)
    network = CharTransformer(config.hyperparameters, config.vocabulary_size, config.context_length).eval()
    return LoadedModel(config, network, {})


class StopSequenceFilterTest(unittest.TestCase):
    def test_holds_back_a_possible_start_and_cuts_at_the_match(self) -> None:
        stop_filter = StopSequenceFilter(["\nUser:"])
        self.assertEqual(stop_filter.push("Hello"), "Hello")
        self.assertEqual(stop_filter.push("\nUs"), "")  # might be the stop sequence
        self.assertEqual(stop_filter.push("er:"), "")
        self.assertTrue(stop_filter.stopped)
        self.assertEqual(stop_filter.text, "Hello")

    def test_releases_held_text_that_turns_out_not_to_match(self) -> None:
        stop_filter = StopSequenceFilter(["abc"])
        self.assertEqual(stop_filter.push("xab"), "x")
        self.assertEqual(stop_filter.push("d"), "abd")
        self.assertEqual(stop_filter.push("ab"), "")
        self.assertEqual(stop_filter.flush(), "ab")
        self.assertFalse(stop_filter.stopped)

    def test_earliest_of_several_matches_wins(self) -> None:
        stop_filter = StopSequenceFilter(["cd", "b"])
        stop_filter.push("abcd")
        self.assertEqual(stop_filter.text, "a")


class ConfigTest(unittest.TestCase):
    def test_names_the_bad_field(self) -> None:
        raw = base_config("x", "1")
        raw["hyperparameters"]["heads"] = 3
        with self.assertRaises(ModelFormatError) as caught:
            parse_config(raw)
        self.assertEqual(caught.exception.param, "hyperparameters.heads")
        raw = base_config("x", "1")
        raw["architecture"] = "llama"
        with self.assertRaises(ModelFormatError):
            parse_config(raw)

    def test_sha256_expectations(self) -> None:
        sums = parse_sha256_file(f"{'a' * 64}  config.json\n{'B' * 64} *model.safetensors\n")
        self.assertEqual(check_expected_sha256(sums)["model.safetensors"], "b" * 64)
        with self.assertRaises(ValueError):
            check_expected_sha256({"config.json": "a" * 64})


class OpenAiApiTest(unittest.TestCase):
    model = small_model()

    def test_chat_prompt_counts_and_template_stop(self) -> None:
        body = {
            "messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
        }
        request = openai_api.parse_chat_request(body, self.model)
        self.assertEqual(request.prompt, "System: Be brief.\nUser: Hi\nAssistant:")
        self.assertEqual(request.options.stop, ("\nUser:",))
        self.assertEqual(request.options.max_tokens, 40)  # the default, capped by max_output_tokens
        completion = self.model.complete(request.prompt, request.options, request.prompt_param)
        self.assertEqual(completion.usage.prompt_tokens, 37)

    def test_refusals(self) -> None:
        cases = [
            ({"prompt": "x", "n": 2}, "n"),
            ({"prompt": "x", "logprobs": 3}, "logprobs"),
            ({"prompt": ["a", "b"]}, "prompt"),
            ({"prompt": "x", "max_tokens": 41}, "max_tokens"),
            ({"prompt": "x", "temperature": "hot"}, "temperature"),
            ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
            ({"prompt": "x" * 65}, "prompt"),
            ({"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
        ]
        for body, param in cases:
            with self.subTest(body=body):
                try:
                    request = openai_api.parse_completion_request(body, self.model)
                    self.model.start_completion(request.prompt, request.options, request.prompt_param)
                except ApiError as error:
                    self.assertEqual(error.status, 400)
                    self.assertEqual(error.body["error"]["param"], param)
                except Exception as error:  # model errors reach HTTP through ApiError.from_model_error
                    api_error = ApiError.from_model_error(error)
                    self.assertEqual((api_error.status, api_error.body["error"]["param"]), (400, param))
                else:
                    self.fail("accepted")

    def test_unsupported_options_name_their_code(self) -> None:
        # Issue 25 item 2: response_format was refused with code null, unlike every other unsupported option.
        for body, param in [
            ({"prompt": "x", "n": 2}, "n"),
            ({"prompt": "x", "response_format": {"type": "json_object"}}, "response_format"),
        ]:
            with self.subTest(param=param), self.assertRaises(ApiError) as caught:
                openai_api.parse_completion_request(body, self.model)
            self.assertEqual(caught.exception.body["error"]["param"], param)
            self.assertEqual(caught.exception.body["error"]["code"], "unsupported_parameter")

    def test_unknown_model_is_404(self) -> None:
        with self.assertRaises(ApiError) as caught:
            openai_api.check_model_name({"model": "gpt-4"}, frozenset({"unit-test"}))
        self.assertEqual(
            (caught.exception.status, caught.exception.body["error"]["code"]), (404, "model_not_found")
        )

    def test_stream_shape(self) -> None:
        options = SamplingOptions(max_tokens=5, seed=1)
        events = self.model.start_completion("ab", options)
        identity = ResponseIdentity(id="chatcmpl-1", created=0)
        lines = list(
            openai_api.server_sent_events(events, identity, "unit-test", chat=True, include_usage=True)
        )
        self.assertEqual(lines[-1], "data: [DONE]\n\n")
        chunks = [json.loads(line[len("data: ") :]) for line in lines[:-1]]
        self.assertEqual(chunks[0]["choices"][0]["delta"], {"role": "assistant", "content": ""})
        self.assertEqual(chunks[-1]["choices"], [])
        self.assertEqual(chunks[-1]["usage"]["prompt_tokens"], 2)
        text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks[1:-1])
        self.assertEqual(text, self.model.complete("ab", options).text)
        self.assertIn(chunks[-2]["choices"][0]["finish_reason"], ("stop", "length"))

    def test_embeddings_base64_is_float32(self) -> None:
        embeddings = self.model.embed(["hello"])
        body = openai_api.embeddings_body("unit-test", embeddings.vectors, embeddings.usage, "base64")
        decoded = struct.unpack("<16f", base64.b64decode(body["data"][0]["embedding"]))
        for sent, computed in zip(decoded, embeddings.vectors[0], strict=True):
            self.assertAlmostEqual(sent, computed, places=6)
        self.assertEqual(body["usage"], {"prompt_tokens": 5, "total_tokens": 5})


if __name__ == "__main__":
    torch.set_num_threads(1)
    unittest.main()
