// Live updates for the console's lists and alert pages: server-sent events from /events say
// what changed; the page re-reads itself and swaps in its live regions ([data-live]).
// Without JavaScript or EventSource the pages stay as served, and a reload shows the news.
"use strict";
(function () {
  if (!window.EventSource || !document.querySelector("[data-live]")) return;
  const note = document.querySelector("[data-live-status]");
  const pending = new Set();
  let timer = null;

  function wants(region, topic, news) {
    const topics = (region.dataset.live || "").split(" ");
    if (topic !== "resync" && !topics.includes(topic)) return false;
    // An alert's own page follows that alert only.
    return !(topic === "alert" && region.dataset.liveId && news && String(news.id) !== region.dataset.liveId);
  }

  function statuses(root) {
    const found = new Map();
    root.querySelectorAll("tr[data-uid]").forEach((row) => found.set(row.dataset.uid, row.dataset.status));
    return found;
  }

  async function refresh() {
    timer = null;
    const ids = Array.from(pending);
    pending.clear();
    let page;
    try {
      const answer = await fetch(location.href, {credentials: "same-origin", headers: {accept: "text/html"}});
      if (!answer.ok) return;
      page = new DOMParser().parseFromString(await answer.text(), "text/html");
    } catch (error) {
      return;
    }
    const before = statuses(document);
    for (const id of ids) {
      const region = document.getElementById(id);
      const fresh = page.getElementById(id);
      if (region && fresh) region.replaceWith(document.importNode(fresh, true));
    }
    // Rows whose status moved are marked for a moment, so the eye finds them.
    document.querySelectorAll("tr[data-uid]").forEach((row) => {
      if (before.get(row.dataset.uid) !== row.dataset.status) row.classList.add("moved");
    });
    if (note && note.dataset.updated) {
      note.textContent = note.dataset.updated + " " + new Date().toLocaleTimeString("vi-VN", {hour12: false});
    }
  }

  function news(topic, data) {
    document.querySelectorAll("[data-live]").forEach((region) => {
      if (region.id && wants(region, topic, data)) pending.add(region.id);
    });
    if (pending.size && timer === null) timer = setTimeout(refresh, 250);
  }

  const source = new EventSource("/events");
  let opened = false;
  source.addEventListener("hello", () => {
    // After a reconnection, whatever changed meanwhile: re-read every live region.
    if (opened) news("resync", null);
    opened = true;
    document.documentElement.dataset.live = "open";
  });
  source.addEventListener("resync", () => news("resync", null));
  source.addEventListener("device", (event) => news("device", JSON.parse(event.data)));
  source.addEventListener("alert", (event) => news("alert", JSON.parse(event.data)));
  source.addEventListener("error", () => { document.documentElement.dataset.live = "closed"; });
  window.addEventListener("pagehide", () => source.close());
})();
