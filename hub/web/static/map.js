// The console's map: ward outlines, then every device as a shape (kind) in a colour
// (status), clustered; popups link to each device's page. Data comes with the page.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("map-data").textContent);
  const element = document.getElementById("map");
  const order = data.statuses; // worst first
  const shapes = {
    speaker: '<polygon points="9,2 17,16 1,16"/>',
    camera: '<rect x="2.5" y="2.5" width="13" height="13"/>',
    sensor: '<circle cx="9" cy="9" r="7"/>',
  };
  function escape(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({
      "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
    })[c]);
  }
  function label(d) {
    return `${d.name || d.uid} · ${data.words.kind[d.kind] || d.kind} · ${data.words.status[d.status] || d.status}`;
  }
  function icon(d) {
    return L.divIcon({
      className: `device-marker kind-${d.kind} status-${d.status}`,
      html: `<svg viewBox="0 0 18 18" width="18" height="18" aria-hidden="true">${shapes[d.kind] || shapes.sensor}</svg>`,
      iconSize: [18, 18],
      iconAnchor: [9, 9],
      popupAnchor: [0, -8],
    });
  }
  function worst(markers) {
    let rank = order.length - 1;
    for (const m of markers) {
      const r = order.indexOf(m.options.status);
      if (r >= 0 && r < rank) rank = r;
    }
    return order[rank];
  }
  // Clustering needs a deepest zoom, which a tile layer would otherwise give.
  const map = L.map(element, {
    zoomSnap: 0.5,
    maxZoom: data.tiles ? data.tiles.max_zoom : 19,
    attributionControl: !!data.tiles,
  });
  if (data.tiles) {
    L.tileLayer(data.tiles.url, {
      attribution: escape(data.tiles.attribution || ""),
      maxZoom: data.tiles.max_zoom,
    }).addTo(map);
  }
  const outlines = L.geoJSON(data.wards, {
    style: {className: "ward-outline", color: "#14283c", weight: 2, fillOpacity: 0.04},
    interactive: false,
  }).addTo(map);
  // Each ward's name just inside its top edge, under the devices.
  map.createPane("wardLabels").style.zIndex = 450;
  for (const feature of data.wards.features) {
    const box = L.geoJSON(feature).getBounds();
    L.marker([box.getNorth(), box.getCenter().lng], {
      icon: L.divIcon({className: "ward-label", html: `<span>${escape(feature.properties.name)}</span>`, iconSize: [0, 0]}),
      pane: "wardLabels",
      interactive: false,
      keyboard: false,
    }).addTo(map);
  }
  const cluster = L.markerClusterGroup({
    maxClusterRadius: 45,
    chunkedLoading: true,
    showCoverageOnHover: false,
    iconCreateFunction(group) {
      const children = group.getAllChildMarkers();
      const status = worst(children);
      const size = children.length < 10 ? 30 : children.length < 100 ? 36 : 42;
      return L.divIcon({
        className: `device-cluster status-${status}`,
        html: `<span>${children.length}</span>`,
        iconSize: [size, size],
      });
    },
  });
  const byUid = {};
  for (const d of data.devices) {
    const marker = L.marker([d.lat, d.lon], {
      icon: icon(d),
      title: label(d),
      alt: label(d),
      status: d.status,
      kind: d.kind,
      riseOnHover: true,
    });
    marker.bindPopup(
      `<b>${escape(d.name || d.uid)}</b><br><code>${escape(d.uid)}</code><br>` +
      `${escape(data.words.kind[d.kind] || d.kind)} · ${escape(data.words.status[d.status] || d.status)}<br>` +
      `<a href="/devices/${encodeURIComponent(d.uid)}">${escape(data.words.open)}</a>` +
      (d.kind === "camera"
        ? ` · <a href="/cameras/${encodeURIComponent(d.uid)}">${escape(data.words.live)}</a>`
        : "")
    );
    byUid[d.uid] = marker;
    cluster.addLayer(marker);
  }
  map.addLayer(cluster);
  const bounds = L.latLngBounds([]);
  if (data.devices.length) bounds.extend(cluster.getBounds());
  if (data.wards.features.length) bounds.extend(outlines.getBounds());
  if (bounds.isValid()) map.fitBounds(bounds, {padding: [20, 20]});
  else map.setView([data.view.latitude, data.view.longitude], data.view.zoom);
  const focus = data.focus && byUid[data.focus];
  if (focus) cluster.zoomToShowLayer(focus, () => focus.openPopup());
  // For the browser tests and the curious: what is drawn.
  window.iochubMap = {map, cluster, outlines, devices: data.devices.length};
  element.dataset.ready = "true";
})();
