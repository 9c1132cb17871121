"""Downloading an avatar from a URL someone else chose, without reaching our own network.

Only http and https. The host is resolved first and every address it resolves to must be
public: loopback, private, link-local (which holds the cloud metadata service), shared,
reserved and multicast addresses are refused. The request then goes to the checked address
itself (Host header and TLS server name kept), so a second DNS answer cannot swap it. The same
happens on every redirect, at most three. `AVATAR_URL_ALLOWLIST` `host:port` entries skip the
address check, for chosen local servers such as the external API's dev server.
"""

import asyncio
import ipaddress
import socket
from collections.abc import Collection
from typing import Final

import httpx

from sync_worker.outbound.botapi import FileTooLarge, read_capped

MAX_REDIRECTS: Final = 3
IMAGE_TYPES: Final = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
}


class AvatarRefused(Exception):
    """The URL or its answer is not acceptable; final, the reason is safe to store."""


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


async def fetch_image(
    http: httpx.AsyncClient,
    url: str,
    *,
    allowlist: Collection[str],
    max_bytes: int,
    timeout: float,
) -> tuple[bytes, str]:
    """The image's bytes and content type; raises `AvatarRefused` or an httpx error."""
    try:
        async with asyncio.timeout(timeout):
            return await _follow(http, url, allowlist, max_bytes)
    except TimeoutError:
        raise AvatarRefused(f"no answer within {timeout:g} s") from None
    except FileTooLarge:
        raise AvatarRefused(f"larger than {max_bytes} bytes") from None


async def _follow(
    http: httpx.AsyncClient, url: str, allowlist: Collection[str], max_bytes: int
) -> tuple[bytes, str]:
    target = httpx.URL(url)
    for _hop in range(MAX_REDIRECTS + 1):
        request = await _checked_request(http, target, allowlist)
        response = await http.send(request, stream=True, follow_redirects=False)
        try:
            if response.is_redirect:
                location = response.headers.get("location")
                if not location:
                    raise AvatarRefused("redirect without a location")
                target = target.join(location)
                continue
            if response.status_code != 200:
                raise AvatarRefused(f"HTTP {response.status_code}")
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type not in IMAGE_TYPES:
                raise AvatarRefused(f"not an image: {content_type or 'no content type'}")
            return await read_capped(response, max_bytes), content_type
        finally:
            await response.aclose()
    raise AvatarRefused(f"more than {MAX_REDIRECTS} redirects")


async def _checked_request(
    http: httpx.AsyncClient, url: httpx.URL, allowlist: Collection[str]
) -> httpx.Request:
    if url.scheme not in ("http", "https"):
        raise AvatarRefused(f"scheme not allowed: {url.scheme or 'none'}")
    host = url.host
    if not host:
        raise AvatarRefused("no host")
    port = url.port or (443 if url.scheme == "https" else 80)
    if f"{host}:{port}" in allowlist:
        return http.build_request("GET", url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise AvatarRefused(f"cannot resolve {host}") from None
    addresses = sorted({ipaddress.ip_address(info[4][0]) for info in infos}, key=str)
    if not addresses or not all(is_public(address) for address in addresses):
        raise AvatarRefused(f"{host} resolves to a non-public address")
    # Connect to the address just checked, so a second DNS answer cannot swap it.
    return http.build_request(
        "GET",
        url.copy_with(host=str(addresses[0])),
        headers={"Host": url.netloc.decode("ascii")},
        extensions={"sni_hostname": host},
    )
