"""Drives a command through a pseudo-terminal: sends each line after the prompt "> " appears,
then prints everything the program wrote as JSON {"output", "status"}. Used by the chat test."""
import json, os, pty, select, sys, time

def main():
    lines = json.loads(sys.argv[1])
    argv = sys.argv[2:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    out = b""
    sent = 0
    deadline = time.time() + 120
    prompts_seen = 0
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        count = out.count(b"> ")
        if count > prompts_seen and sent < len(lines):
            prompts_seen = count
            os.write(fd, (lines[sent] + "\n").encode())
            sent += 1
        elif count > prompts_seen:
            prompts_seen = count
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"output": out.decode("utf-8", "replace"), "status": os.waitstatus_to_exitcode(status)}))

main()
