/* liebian landing-page tracker. <script src="https://SHORT.DOMAIN/t.js" data-workspace="ws_…" defer></script>
   Sets a first-party visitor id, keeps the click id (lb_cid) the short link appended, and sends
   page views and custom events with sendBeacon. Exposes window.liebian.track(name, props) and
   window.liebian.visitorId (send it to your server on sign-up and call POST /api/v1/identify). */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var workspace = script.getAttribute("data-workspace");
  var endpoint = script.src.replace(/\/t\.js(\?.*)?$/, "/collect");
  var YEAR = 365 * 864e5;

  function readCookie(name) {
    var m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : null;
  }
  function writeCookie(name, value, ms) {
    document.cookie = name + "=" + encodeURIComponent(value) + "; path=/; max-age=" +
      Math.floor(ms / 1000) + "; SameSite=Lax" + (location.protocol === "https:" ? "; Secure" : "");
  }
  function randomId() {
    var a = new Uint8Array(16);
    (window.crypto || window.msCrypto).getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  var visitorId = readCookie("lb_vid") || randomId();
  writeCookie("lb_vid", visitorId, YEAR);
  var params = new URLSearchParams(location.search);
  var clickId = params.get("lb_cid");
  if (clickId) writeCookie("lb_cid", clickId, 30 * 864e5);
  else clickId = readCookie("lb_cid");

  function track(name, props) {
    var body = JSON.stringify({
      w: workspace, e: name, id: randomId(), vid: visitorId, cid: clickId,
      url: location.href, ref: document.referrer, ts: new Date().toISOString(), p: props || {}
    });
    // text/plain keeps the beacon a "simple" request: no CORS preflight on a weak network.
    var blob = new Blob([body], { type: "text/plain" });
    if (!(navigator.sendBeacon && navigator.sendBeacon(endpoint, blob))) {
      fetch(endpoint, { method: "POST", body: body, keepalive: true, mode: "no-cors" });
    }
  }

  window.liebian = { track: track, visitorId: visitorId, clickId: clickId };
  track("page_view");
})();
