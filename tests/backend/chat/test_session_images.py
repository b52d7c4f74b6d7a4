"""Images generated in a session through the gateway (the OpenAI images wire format, from a real image server),
kept with the session and served back only to its owner; lists never carry image data."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator

import httpx
import pytest

from backend.chat.images import decoded_images, sniff
from backend.errors import UpstreamError
from tests.backend.chat.context_helpers import registered_model
from tests.backend.chat.helpers import new_session, new_user
from tests.support import LisaServer, Proc


@pytest.fixture(scope="module")
def painter(admin: httpx.Client, image_server: Proc) -> Iterator[str]:
    with registered_model(admin, "img-painter", type="imagegen", hosting="internal",
                          base_url=image_server.url + "/v1") as model_id:  # fmt: skip
        yield model_id


@pytest.fixture(scope="module")
def alice(admin: httpx.Client, lisa: LisaServer) -> Iterator[httpx.Client]:
    with new_user(admin, lisa, "img-alice") as client:
        yield client


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_images_are_generated_kept_and_served_to_the_owner(alice: httpx.Client, painter: str) -> None:
    session = new_session(alice, title="pictures")["id"]
    body = {"model": painter, "prompt": "a lighthouse at dusk", "n": 2, "size": "256x256"}
    resp = alice.post(f"/api/sessions/{session}/images", json=body)
    assert resp.status_code == 201, resp.text
    made = resp.json()
    assert len(made["images"]) == 2
    for image in made["images"]:
        assert image["mime"] == "image/png" and image["model"] == painter and image["prompt"] == body["prompt"]
        assert image["url"] == f"/api/sessions/{session}/images/{image['id']}"
        assert image["message_id"] == made["assistant_message_id"] and "data" not in image and "b64_json" not in image
        got = alice.get(image["url"])
        assert got.status_code == 200 and got.headers["content-type"] == "image/png"
        assert got.headers["x-content-type-options"] == "nosniff"
        assert png_size(got.content) == (256, 256) and len(got.content) == image["size_bytes"]
    first, second = (alice.get(i["url"]).content for i in made["images"])
    assert first != second  # two images, not one twice
    listed = alice.get(f"/api/sessions/{session}/images").json()
    assert [i["id"] for i in listed["data"]] == [i["id"] for i in made["images"]]
    # The session shows the turn: the prompt, then an answer whose metadata names the images (ids, not data)
    shown = alice.get(f"/api/sessions/{session}")
    messages = shown.json()["messages"]
    assert [m["id"] for m in messages] == [made["user_message_id"], made["assistant_message_id"]]
    assert messages[0]["content"] == body["prompt"] and messages[0]["role"] == "user"
    assert messages[1]["metadata"]["images"] == [i["id"] for i in made["images"]]
    assert messages[1]["parent_id"] == made["user_message_id"]
    assert "data:image" not in shown.text and "base64" not in shown.text
    # a second generation continues the branch
    again = alice.post(f"/api/sessions/{session}/images", json={"model": painter, "prompt": "the same, at dawn"})
    assert again.status_code == 201
    after = alice.get(f"/api/sessions/{session}").json()["messages"]
    assert after[2]["parent_id"] == made["assistant_message_id"] and len(after) == 4


def test_bad_requests_and_other_users(admin: httpx.Client, lisa: LisaServer, alice: httpx.Client, painter: str) -> None:
    session = new_session(alice)["id"]
    url = f"/api/sessions/{session}/images"
    for bad in ({"model": painter, "prompt": ""}, {"model": painter, "prompt": "x", "n": 5},
                {"model": painter, "prompt": "x", "size": "3x3"}, {"model": painter, "prompt": "x", "style": "vivid"},
                {"prompt": "x"}, {"model": painter, "prompt": "x" * 4001}):  # fmt: skip
        assert alice.post(url, json=bad).status_code == 422, bad
    textgen = alice.post(url, json={"model": "gemma3-270m", "prompt": "a cat"})
    assert textgen.status_code == 400 and "textgen" in textgen.json()["detail"], textgen.text
    assert alice.post(url, json={"model": "no-such-painter", "prompt": "a cat"}).status_code == 404
    with registered_model(admin, "img-dead", type="imagegen", hosting="internal",
                          base_url="http://127.0.0.1:9/v1") as dead:  # fmt: skip
        assert alice.post(url, json={"model": dead, "prompt": "a cat"}).status_code == 502
    # nothing was kept of the refused or failed generations
    assert alice.get(url).json()["data"] == [] and alice.get(f"/api/sessions/{session}").json()["messages"] == []
    image = alice.post(url, json={"model": painter, "prompt": "mine", "size": "256x256"}).json()["images"][0]
    with new_user(admin, lisa, "img-bob") as bob:
        assert bob.post(url, json={"model": painter, "prompt": "into alice's session"}).status_code == 404
        assert bob.get(url).status_code == 404
        assert bob.get(image["url"]).status_code == 404
        own = new_session(bob)["id"]
        assert bob.get(f"/api/sessions/{own}/images/{image['id']}").status_code == 404
    assert alice.get(f"{url}/img_missing").status_code == 404
    assert alice.get(f"/api/sessions/ses_missing/images/{image['id']}").status_code == 404


def test_what_an_image_model_sends_is_checked() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    encoded = base64.b64encode(png).decode()
    assert decoded_images({"data": [{"b64_json": encoded, "revised_prompt": "r"}]}, 1000) == [(png, "image/png", "r")]
    assert sniff(b"\xff\xd8\xff\xe0") == "image/jpeg" and sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff(b"<svg xmlns='http://www.w3.org/2000/svg'/>") is None
    for answer, reason in (
        ({"data": []}, "without any image"),
        ({"data": [{"url": "https://example.com/x.png"}]}, "b64_json"),
        ({"data": [{"b64_json": "not base64!"}]}, "not valid base64"),
        ({"data": [{"b64_json": base64.b64encode(b"<svg/>").decode()}]}, "not a PNG"),
        ({"data": [{"b64_json": base64.b64encode(png * 100).decode()}]}, "over the limit"),
    ):
        with pytest.raises(UpstreamError, match=reason):
            decoded_images(answer, 1000)
