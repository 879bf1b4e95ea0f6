// The broadcast forms' enhancements; the forms work the same without them.
// - "Listen before saving": the API speaks the text (POST /api/v1/tts/preview), played here.
// - "Before saving": the panel is asked for again (debounced) whenever the form changes.
(() => {
  "use strict";

  async function problemText(response) {
    try {
      const problem = await response.json();
      const details = (problem.errors || []).map((e) => e.message);
      return [problem.detail, ...details].filter(Boolean).join(": ");
    } catch (_) {
      return response.status + " " + response.statusText;
    }
  }

  // Any form with the listen button (scheduling and emergency): its texts are on the button's box.
  for (const box of document.querySelectorAll("form[data-csrf] .tts-preview")) {
    const owner = box.closest("form");
    box.hidden = false;
    const button = box.querySelector("button.listen");
    const state = box.querySelector(".tts-state");
    const audio = box.querySelector("audio");
    let objectUrl = null;
    button.addEventListener("click", async () => {
      state.classList.remove("field-error");
      state.textContent = box.dataset.speaking;
      button.disabled = true;
      try {
        const response = await fetch(button.dataset.url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "accept": "audio/wav, application/problem+json",
            "x-csrf-token": owner.dataset.csrf,
          },
          body: JSON.stringify({text: owner.elements.text.value, voice: owner.elements.voice.value}),
        });
        if (!response.ok) throw new Error(await problemText(response));
        const blob = await response.blob();
        if (objectUrl) URL.revokeObjectURL(objectUrl);
        objectUrl = URL.createObjectURL(blob);
        audio.src = objectUrl;
        audio.hidden = false;
        audio.dataset.bytes = String(blob.size);
        state.textContent = box.dataset.ready;
        audio.play().catch(() => {});
      } catch (error) {
        state.textContent = box.dataset.failed + " " + error.message;
        state.classList.add("field-error");
      } finally {
        button.disabled = false;
      }
    });
  }

  const form = document.querySelector("form.broadcast-form[data-plan]");
  if (!form) return;
  const texts = window.iochubBroadcastTexts || {};

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
