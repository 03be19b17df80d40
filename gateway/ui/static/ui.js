// Review page: toggle the OCR boxes, and a small image viewer (window presets, scrolling through a series).
"use strict";
(function () {
  const boxes = document.getElementById("toggle-boxes");
  if (boxes) {
    boxes.addEventListener("change", () => document.body.classList.toggle("hide-boxes", !boxes.checked));
  }
  const dataEl = document.getElementById("study-data");
  const viewer = document.getElementById("viewer");
  if (!dataEl || !viewer) return;
  const data = JSON.parse(dataEl.textContent);
  const img = document.getElementById("vimg");
  const pos = document.getElementById("vpos");
  const strip = document.getElementById("vstrip");
  const presets = viewer.querySelector(".presets");
  let list = [], index = 0, linked = null, windowParam = "";

  function show() {
    const inst = list[index];
    img.src = inst.rendered + (windowParam ? "&window=" + windowParam : "");
    img.alt = "series " + inst.series_number + " image " + inst.number;
    pos.textContent = "Se " + inst.series_number + " · Im " + inst.number + " (" + (index + 1) + "/" + list.length + ")";
    strip.querySelectorAll("img").forEach((el, i) => {
      el.classList.toggle("current", i === index);
    });
    const cur = strip.children[index];
    if (cur) cur.scrollIntoView({ block: "nearest", inline: "nearest" });
  }
  function open(sop) {
    for (const s of Object.values(data.series)) {
      const i = s.instances.findIndex((x) => x.sop === sop);
      if (i >= 0) {
        list = s.instances; index = i; linked = sop; windowParam = "";
        strip.replaceChildren(...list.map((x, k) => {
          const t = document.createElement("img");
          t.src = x.thumbnail; t.width = 48; t.height = 48; t.alt = "Im " + x.number;
          if (x.sop === linked) t.classList.add("linked");
          t.addEventListener("click", () => { index = k; show(); });
          return t;
        }));
        presets.querySelectorAll("button[data-window]:not([data-window=''])").forEach((b) => b.remove());
        for (const p of data.presets) {
          if (!p.modalities.includes(s.modality)) continue;
          const b = document.createElement("button");
          b.type = "button"; b.dataset.window = p.center + "," + p.width; b.textContent = p.name;
          presets.appendChild(b);
        }
        show();
        viewer.showModal();
        return;
      }
    }
  }
  document.querySelectorAll("[data-open]").forEach((el) => el.addEventListener("click", () => open(el.dataset.open)));
  presets.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-window]");
    if (b) { windowParam = b.dataset.window; show(); }
  });
  viewer.addEventListener("wheel", (e) => {
    e.preventDefault();
    index = Math.max(0, Math.min(list.length - 1, index + (e.deltaY > 0 ? 1 : -1)));
    show();
  }, { passive: false });
  viewer.addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown" || e.key === "ArrowRight") { index = Math.min(list.length - 1, index + 1); show(); e.preventDefault(); }
    if (e.key === "ArrowUp" || e.key === "ArrowLeft") { index = Math.max(0, index - 1); show(); e.preventDefault(); }
  });
  document.getElementById("vclose").addEventListener("click", () => viewer.close());
})();
