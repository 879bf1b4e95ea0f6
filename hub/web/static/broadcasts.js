// The scheduling form's enhancements; the form works the same without them.
// - "Listen before saving": the API speaks the text (POST /api/v1/tts/preview), played here.
// - "Before saving": the panel is asked for again (debounced) whenever the form changes.
(() => {
  "use strict";
  const form = document.querySelector("form.broadcast-form[data-plan]");
  if (!form) return;
  const texts = window.iochubBroadcastTexts || {};
  const csrf = form.dataset.csrf || "";

  // Refuse an oversized file before sending it rather than after.
  form.addEventListener("submit", (event) => {
    const input = form.querySelector("input[type=file]");
    const file = input && input.files[0];
    const chosen = form.querySelector("input[name=source][value=file]");
    if (file && chosen && chosen.checked && file.size > Number(input.dataset.max)) {
      event.preventDefault();
      alert(texts.tooLarge);
    }
  });

  async function problemText(response) {
    try {
      const problem = await response.json();
      const details = (problem.errors || []).map((e) => e.message);
      return [problem.detail, ...details].filter(Boolean).join(": ");
    } catch (_) {
      return response.status + " " + response.statusText;
    }
  }

  const listen = form.querySelector(".tts-preview");
  if (listen) {
    listen.hidden = false;
    const button = listen.querySelector("button.listen");
    const state = listen.querySelector(".tts-state");
    const audio = listen.querySelector("audio");
    let objectUrl = null;
    button.addEventListener("click", async () => {
      state.classList.remove("field-error");
      state.textContent = texts.speaking;
      button.disabled = true;
      try {
        const response = await fetch(button.dataset.url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "accept": "audio/wav, application/problem+json",
            "x-csrf-token": csrf,
          },
          body: JSON.stringify({text: form.elements.text.value, voice: form.elements.voice.value}),
        });
        if (!response.ok) throw new Error(await problemText(response));
        const blob = await response.blob();
        if (objectUrl) URL.revokeObjectURL(objectUrl);
        objectUrl = URL.createObjectURL(blob);
        audio.src = objectUrl;
        audio.hidden = false;
        audio.dataset.bytes = String(blob.size);
        state.textContent = texts.ready;
        audio.play().catch(() => {});
      } catch (error) {
        state.textContent = texts.failed + " " + error.message;
        state.classList.add("field-error");
      } finally {
        button.disabled = false;
      }
    });
  }

  const panel = document.querySelector("aside.plan");
  if (!panel) return;
  let timer = null;
  let inflight = null;
  let asked = 0;
  async function refresh() {
    const data = new FormData(form);
    data.delete("file");
    data.set("action", "preview");
    if (inflight) inflight.abort();
    const controller = new AbortController();
    inflight = controller;
    const number = ++asked;
    panel.setAttribute("aria-busy", "true");
    panel.dataset.state = "updating";
    try {
      const response = await fetch(form.dataset.plan, {method: "POST", body: data, signal: controller.signal});
      if (!response.ok) throw new Error(String(response.status));
      const html = await response.text();
      if (number !== asked) return;
      panel.innerHTML = html;
      const rule = panel.querySelector("template.rule-template");
      const words = document.getElementById("rule-words");
      if (rule && words) words.innerHTML = rule.innerHTML;
      panel.dataset.state = "fresh";
      panel.dataset.refreshed = String(number);
    } catch (error) {
      if (error.name === "AbortError") return;
      panel.dataset.state = "stale";
      let note = panel.querySelector(".stale-note");
      if (!note) {
        note = document.createElement("p");
        note.className = "stale-note warn";
        panel.prepend(note);
      }
      note.textContent = texts.unreachable;
    } finally {
      if (number === asked) panel.removeAttribute("aria-busy");
    }
  }
  const soon = (event) => {
    if (event.target && event.target.type === "file") return;
    clearTimeout(timer);
    timer = setTimeout(refresh, 600);
  };
  form.addEventListener("input", soon);
  form.addEventListener("change", soon);
})();
