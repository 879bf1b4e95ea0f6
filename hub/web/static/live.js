// Live camera players: HLS through hls.js (served by the hub itself), the MJPEG fallback
// when the hub streams as many cameras as it may, and the camera's health when neither works.
"use strict";
(function () {
  // The page's language: the template hands the player its words (English if it does not).
  function word(player, key, english) {
    try {
      return JSON.parse(player.dataset.words || "{}")[key] || english;
    } catch (error) {
      return english;
    }
  }

  function say(player, state, text) {
    player.dataset.state = state;
    player.querySelector(".player-state").textContent = text;
  }

  async function whyNot(player) {
    // Ask the playlist again to read the problem the hub gives (RFC 9457).
    try {
      const answer = await fetch(player.dataset.hls, {credentials: "same-origin"});
      if (answer.ok) return {status: 200, detail: word(player, "stopped", "the stream stopped")};
      const problem = await answer.json();
      return {status: answer.status, detail: problem.detail || answer.statusText};
    } catch (error) {
      return {status: 0, detail: String(error)};
    }
  }

  function mjpeg(player, reason) {
    const image = player.querySelector("img");
    player.querySelector("video").hidden = true;
    image.hidden = false;
    image.onload = () => say(player, "playing", word(player, "snapshots", "snapshots (MJPEG)") + " · " + reason);
    image.onerror = () => say(player, "failed", word(player, "cannot_show", "cannot show this camera") + " · " + word(player, "health", "health") + ": " + player.dataset.health);
    image.src = player.dataset.mjpeg;
  }

  async function failed(player) {
    const why = await whyNot(player);
    if (why.status === 503 && player.dataset.mjpeg) {
      mjpeg(player, word(player, "at_limit", "the hub streams as many cameras as it may"));
      return;
    }
    say(player, "failed", word(player, "cannot_stream", "cannot stream") + " · " + word(player, "health", "health") + ": " + player.dataset.health + " · " + why.detail);
  }

  function start(player) {
    const video = player.querySelector("video");
    video.addEventListener("playing", () => say(player, "playing", word(player, "live", "live")));
    if (window.Hls && window.Hls.isSupported()) {
      const hls = new window.Hls({lowLatencyMode: false, liveSyncDurationCount: 2});
      hls.on(window.Hls.Events.FRAG_LOADED, () => {
        if (player.dataset.state === "loading") say(player, "receiving", word(player, "receiving", "receiving video…"));
      });
      hls.on(window.Hls.Events.ERROR, (_, data) => {
        if (data.fatal) { hls.destroy(); failed(player); }
      });
      hls.loadSource(player.dataset.hls);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = player.dataset.hls;
      video.addEventListener("error", () => failed(player));
    } else if (player.dataset.mjpeg) {
      mjpeg(player, word(player, "no_hls", "this browser plays no HLS"));
    } else {
      say(player, "failed", word(player, "no_hls", "this browser plays no HLS"));
    }
  }

  document.querySelectorAll("figure.player").forEach(start);
})();
