"""An SMTP server for the tests: aiosmtpd on 127.0.0.1:PORT that writes each
message it receives to DIR as a numbered .eml file (written to a temporary
name, then renamed, so a reader never sees half a message).

    python smtp_sink.py PORT DIR
"""

import asyncio
import os
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out):
        self.out = out
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        name = os.path.join(self.out, f"{self.n:04d}.eml")
        tmp = name + ".part"
        with open(tmp, "wb") as f:
            f.write(b"X-Rcpt-To: " + ", ".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(envelope.content)
        os.rename(tmp, name)
        return "250 Message accepted for delivery"


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(out), hostname="127.0.0.1", port=port)
    controller.start()
    # Ready: the tests wait for this line.
    print("listening", flush=True)
    try:
        asyncio.get_event_loop().run_until_complete(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
