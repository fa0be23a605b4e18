// Injected into a copy of report.html by tests/report/test_browser.py: once the charts
// are drawn, write the geometry of every chart panel into a pre element (cdp-measure), so
// `chromium --dump-dom` carries it out.
window.addEventListener("load", () => {
  setTimeout(() => {
    const box = (el) => {
      const r = el.getBoundingClientRect();
      return { left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width };
    };
    const panels = [...document.querySelectorAll(".chart")].map((panel) => ({
      panel: box(panel),
      svgs: [...panel.querySelectorAll("svg.main-svg")].map(box),
      colorbars: [...panel.querySelectorAll("g.colorbar")].map(box),
      xticks: [...panel.querySelectorAll("g.xtick text")].map((t) => t.textContent),
      title: (panel.querySelector("g.g-gtitle text") || {}).textContent || "",
    }));
    const out = document.createElement("pre");
    out.id = "cdp-measure";
    out.textContent = JSON.stringify({
      viewport: window.innerWidth,
      scrollWidth: document.documentElement.scrollWidth,
      plotly: typeof Plotly !== "undefined",
      panels,
    });
    document.body.appendChild(out);
  }, 2000);
});
