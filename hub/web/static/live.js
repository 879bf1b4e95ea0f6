// Live camera players: HLS through hls.js (served by the hub itself), the MJPEG fallback
// when the hub streams as many cameras as it may, and the camera's health when neither works.
"use strict";
(function () {
  function say(player, state, text) {
    player.dataset.state = state;
    player.querySelector(".player-state").textContent = text;
  }

  async function whyNot(player) {
    // Ask the playlist again to read the problem the hub gives (RFC 9457).
    try {
      const answer = await fetch(player.dataset.hls, {credentials: "same-origin"});
      if (answer.ok) return {status: 200, detail: "the stream stopped"};
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
    image.onload = () => say(player, "playing", "snapshots (MJPEG) · " + reason);
    image.onerror = () => say(player, "failed", "cannot show this camera · health: " + player.dataset.health);
    image.src = player.dataset.mjpeg;
  }

  async function failed(player) {
    const why = await whyNot(player);
    if (why.status === 503 && player.dataset.mjpeg) {
      mjpeg(player, "the hub streams as many cameras as it may");
      return;
    }
    say(player, "failed", "cannot stream · health: " + player.dataset.health + " · " + why.detail);
  }

  function start(player) {
    const video = player.querySelector("video");
    video.addEventListener("playing", () => say(player, "playing", "live"));
    if (window.Hls && window.Hls.isSupported()) {
      const hls = new window.Hls({lowLatencyMode: false, liveSyncDurationCount: 2});
      hls.on(window.Hls.Events.FRAG_LOADED, () => {
        if (player.dataset.state === "loading") say(player, "receiving", "receiving video…");
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
      mjpeg(player, "this browser plays no HLS");
    } else {
      say(player, "failed", "this browser plays no HLS");
    }
  }

  document.querySelectorAll("figure.player").forEach(start);
})();
