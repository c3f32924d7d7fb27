// 企业微信 page: the connection (secrets are write-only), test, ways, callbacks received.
// Values reach the page through textContent / setAttribute only.
"use strict";
(() => {
  const BASE = "/api/v1/connectors/wecom";
  // The console's shared helpers (console.js, loaded first): one api(), one alert box.
  const C = window.liebianConsole;
  const { $, h } = C;
  const api = (method, path, json) => C.api(method, path, json === undefined ? {} : { json });
  const alertBox = (kind, text) => C.showAlert(kind, text, "");
  const problem = (e) => C.showError(e);
  const when = (iso) => (iso ? new Date(iso).toLocaleString("zh-CN", { hour12: false }) : "—");
  const KIND = { contact: "联系我", join: "加入群聊" };
  const CHANGE = {
    add_external_contact: "添加客户", add_half_external_contact: "客户添加（未通过）",
    edit_external_contact: "编辑客户", del_external_contact: "删除客户", del_follow_user: "客户删除成员",
    create: "创建", update: "变更", dismiss: "解散", shuffle: "重排", delete: "删除",
  };

  let connected = false;
  async function loadConnection() {
    try {
      const c = await api("GET", BASE);
      connected = true;
      $("#wc-status").textContent = "已连接";
      $("#wc-info").hidden = false;
      $("#wc-corp").textContent = c.corp_id;
      $("#wc-secret-hint").textContent = c.secret_hint;
      $("#wc-callback-url").textContent = c.callback_url;
      $("#wc-last").textContent = when(c.last_callback_at);
      const form = $("#wc-form");
      form.corp_id.value = c.corp_id;
      form.agent_id.value = c.agent_id || "";
      for (const name of ["agent_secret", "token", "encoding_aes_key"]) {
        form[name].value = "";
        form[name].placeholder = "已保存（留空不修改）";
      }
    } catch (e) {
      if (e.status !== 404) throw e;
      connected = false;
      $("#wc-status").textContent = "未连接：填写下面的配置并保存。";
      $("#wc-info").hidden = true;
    }
    $("#wc-check").disabled = !connected;
    $("#wc-sync").disabled = !connected;
  }

  async function loadWays() {
    const tbody = $("#wc-ways tbody");
    tbody.replaceChildren();
    if (!connected) { $("#wc-ways-empty").hidden = false; return; }
    const { items } = await api("GET", `${BASE}/ways`);
    for (const w of items) {
      tbody.append(h("tr", {},
        h("td", { text: KIND[w.kind] || w.kind }), h("td", {}, h("code", { text: w.state })),
        h("td", { text: w.targets.join("、") }), h("td", { text: w.channel || "—" }),
        h("td", {}, w.qr_code ? h("a", { href: w.qr_code, target: "_blank", rel: "noopener noreferrer", text: "二维码" }) : "—"),
        h("td", { text: when(w.created_at) })));
    }
    $("#wc-ways-empty").hidden = items.length > 0;
  }

  async function loadCallbacks() {
    const tbody = $("#wc-callbacks tbody");
    tbody.replaceChildren();
    if (!connected) { $("#wc-callbacks-empty").hidden = false; return; }
    const { items } = await api("GET", `${BASE}/callbacks?limit=50`);
    for (const c of items) {
      const who = Object.entries(c.summary).map(([k, v]) => `${k}=${v}`).join(" ");
      tbody.append(h("tr", { class: "wc-callback" },
        h("td", { text: when(c.received_at) }), h("td", { text: c.event }),
        h("td", { text: CHANGE[c.change_type] || c.change_type || "—" }), h("td", {}, h("code", { text: who || "—" }))));
    }
    $("#wc-callbacks-empty").hidden = items.length > 0;
  }

  const PROGRESS = {
    sending: ["发送中", "muted"], pending_confirmation: ["待确认", "warn"], sent: ["已发送", "ok"],
    partly_sent: ["部分发送", "warn"], failed: ["失败", "bad"], refused: ["本月已满", "bad"], unknown: ["结果未知", "muted"],
  };
  async function loadMassSends() {
    const tbody = $("#wc-mass tbody");
    tbody.replaceChildren();
    if (!connected) { $("#wc-mass-empty").hidden = false; return; }
    const { items, monthly_cap } = await api("GET", `${BASE}/mass-sends?limit=50`);
    $("#wc-cap").textContent = String(monthly_cap);
    for (const t of items) {
      const n = (s) => t.items.filter((i) => i.status === s).length;
      const [label, cls] = PROGRESS[t.progress] || [t.progress, "muted"];
      tbody.append(h("tr", { class: "wc-mass", "data-mass": t.id },
        h("td", { class: "nowrap", text: when(t.created_at) }), h("td", { class: "nowrap", text: t.chat_type === "group" ? "客户群" : "客户" }),
        h("td", { text: t.sender || "—" }), h("td", { class: "wc-text", text: t.text }),
        h("td", {}, h("span", { class: "badge " + cls, text: label }), t.errmsg && t.progress !== "refused" ? h("div", { class: "sub", text: `${t.errcode ? t.errcode + " " : ""}${t.errmsg}` }) : ""),
        h("td", { text: `${n("sent")} / ${n("pending")} / ${n("failed")} / ${n("over_cap")}` }),
        h("td", {}, t.status === "created" && t.progress !== "sent" ? h("button", { type: "button", class: "link", text: "刷新结果", onclick: async () => {
          try { await api("POST", `${BASE}/mass-sends/${encodeURIComponent(t.id)}/refresh`); await loadMassSends(); } catch (e) { problem(e); }
        } }) : "")));
    }
    $("#wc-mass-empty").hidden = items.length > 0;
  }

  async function refresh() {
    await loadConnection();
    await Promise.all([loadWays(), loadCallbacks(), loadMassSends()]);
  }

  function init() {
    $("#wc-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      const body = { corp_id: f.corp_id.value.trim() };
      if (f.agent_id.value.trim()) body.agent_id = f.agent_id.value.trim();
      for (const name of ["agent_secret", "token", "encoding_aes_key"]) if (f[name].value) body[name] = f[name].value;
      try { await api("PUT", BASE, body); await refresh(); alertBox("ok", "已保存。"); } catch (e) { problem(e); }
    });
    $("#wc-check").addEventListener("click", async () => {
      const out = $("#wc-check-result");
      out.textContent = "测试中…";
      try { const r = await api("POST", `${BASE}/check`); out.textContent = r.ok ? `连接正常（${r.corp_id}）` : "连接失败"; }
      catch (e) { out.textContent = "连接失败：" + (e.message || ""); }
    });
    $("#wc-sync").addEventListener("click", async () => {
      try {
        const r = await api("POST", `${BASE}/tags/sync`);
        alertBox("ok", `企业标签已同步：新建 ${r.created}，关联 ${r.linked}，改名 ${r.renamed}，解除 ${r.unlinked}。`);
      } catch (e) { problem(e); }
    });
    $("#wc-way-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      const body = { kind: f.kind.value, state: f.state.value.trim(),
        targets: f.targets.value.split(/[,，\s]+/).filter(Boolean) };
      if (f.channel.value.trim()) body.channel = f.channel.value.trim();
      if (f.welcome_text.value.trim()) body.welcome_text = f.welcome_text.value.trim();
      try { await api("POST", `${BASE}/ways`, body); f.reset(); await loadWays(); alertBox("ok", "已创建。"); } catch (e) { problem(e); }
    });
    $("#wc-receipts-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const ids = ev.target.ids.value.split(/[,，\s]+/).filter(Boolean).slice(0, 200);
      if (!ids.length) return;
      try {
        const r = await api("GET", `${BASE}/receipts?` + ids.map((i) => "external_userid=" + encodeURIComponent(i)).join("&"));
        $("#wc-receipts tbody").replaceChildren(...r.items.map((i) => h("tr", {},
          h("td", {}, h("code", { text: i.external_userid })), h("td", { text: `${i.received} / ${r.cap}（${r.month}）` }),
          h("td", {}, h("span", { class: "badge " + (i.remaining ? "ok" : "bad"), text: i.remaining ? String(i.remaining) : "本月已满" })))));
        $("#wc-receipts").hidden = false;
      } catch (e) { problem(e); }
    });
    refresh().catch(problem).finally(() => document.body.setAttribute("data-wecom-ready", "1"));
  }
  if (document.body.dataset.page === "wecom") init();
})();
