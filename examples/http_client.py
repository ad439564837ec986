"""Stylise an image through `animestream serve`, standard library only.

    animestream serve --port 8000 &
    python examples/http_client.py http://127.0.0.1:8000 samples/astronaut.jpg /tmp/anime.png

The service stylises one image at a time and refuses what its queue cannot hold with 503 and a
Retry-After header, instead of letting latency grow without bound. A client that shares the
service with others should wait that long and try again, as below, rather than fail at once.
"""
import json
import sys
import time
import urllib.error
import urllib.request

ATTEMPTS = 5  # tries before giving up on a busy service


def stylize(base_url: str, image: bytes, style: str = "shinkai") -> bytes:
    request = urllib.request.Request(f"{base_url}/v1/stylize?style={style}", data=image, method="POST")
    for _ in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            if e.code != 503:  # a bad image or parameter: the body says why, in one line
                raise RuntimeError(json.load(e)["error"]) from None
            time.sleep(float(e.headers.get("Retry-After", "1")))
    raise RuntimeError(f"the service stayed busy for {ATTEMPTS} tries")


def main(base_url: str, src: str, dst: str) -> int:
    with open(src, "rb") as f:
        result = stylize(base_url, f.read())
    with open(dst, "wb") as f:
        f.write(result)
    print(f"wrote {dst} ({len(result)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
