"""How the console's browser tests and benchmark start Debian's Chromium: headless, and
quiet (no first-run work, updates, sync or background traffic beside what is measured)."""

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
