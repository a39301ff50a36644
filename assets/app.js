// Placeholder until the browser app lands: shows whether the server is up.
const status = document.getElementById("status");
fetch("/health")
  .then((r) => r.json())
  .then((h) => { status.textContent = `Server ${h.status}, version ${h.version}.`; })
  .catch(() => { status.textContent = "Server unreachable."; });
