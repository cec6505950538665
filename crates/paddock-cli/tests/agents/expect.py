"""expect.py STEPS_JSON CMD...: run CMD on a pty (120x40); STEPS is a list of [regex, keys]:
wait until the screen text (escapes stripped, spaces removed) matches regex, then type keys.
Exit 0 when every step matched, 1 on timeout (printing the screen)."""
import json, os, pty, re, select, sys, time, fcntl, termios, struct
steps = json.loads(sys.argv[1])
argv = sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = "xterm-256color"
    os.execvp(argv[0], argv)
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
buf = b""
def screen():
    t = buf.decode("utf-8", "replace")
    t = re.sub(r"\x1b\][^\x07\x1b]*(\x07|\x1b\\)", "", t)
    t = re.sub(r"\x1b\[[0-9;?<>=]*[a-zA-Z~]", "", t)
    return re.sub(r"\s+", "", t)
ok = True
for pattern, keys in steps:
    deadline = time.time() + float(os.environ.get("EXPECT_TIMEOUT", "60"))
    mark = len(buf)
    while True:
        if re.search(pattern, screen()):
            break
        if time.time() > deadline:
            ok = False
            break
        r, _, _ = select.select([fd], [], [], 0.3)
        if r:
            try:
                d = os.read(fd, 65536)
            except OSError:
                d = b""
            if not d:
                time.sleep(0.1)
                if not re.search(pattern, screen()):
                    ok = False
                break
            buf += d
    if not ok:
        print("TIMEOUT waiting for", pattern)
        break
    print("matched", pattern, flush=True)
    buf = b""
    if keys:
        time.sleep(0.3)
        os.write(fd, keys.encode())
print(screen()[-1500:])
try:
    os.kill(pid, 9)
except ProcessLookupError:
    pass
sys.exit(0 if ok else 1)
