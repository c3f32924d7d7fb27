// 成员与安全: my account and authenticator, members and roles, invitations, the audit log.
// Values reach the page through textContent / setAttribute only.
"use strict";
(() => {
  const KEY = "liebian.apiKey";
  const $ = (sel, root = document) => root.querySelector(sel);
  function h(tag, props, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "class") node.className = v;
      else if (k === "value") node.value = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) if (kid != null && kid !== false) node.append(kid instanceof Node ? kid : String(kid));
    return node;
  }
  // Through fetch: auth.js adds the session's CSRF token and asks for the second
  // verification when an operation needs it.
  async function api(method, path, json, raw) {
    const headers = {};
    const key = sessionStorage.getItem(KEY);
    if (key) headers.Authorization = "Bearer " + key;
    if (json !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, { method, headers, body: json === undefined ? undefined : JSON.stringify(json), cache: "no-store" });
    if (raw && resp.ok) return resp;
    const data = resp.status === 204 ? null : await resp.json().catch(() => null);
    if (!resp.ok) {
      const err = (data && data.error) || {};
      const e = new Error(err.message || resp.statusText);
      e.code = err.code; e.status = resp.status;
      throw e;
    }
    return data;
  }
  const ROLE_ZH = { owner: "所有者", admin: "管理员", operator: "运营", analyst: "分析", viewer: "只读" };
  const ERR_ZH = {
    last_owner: "这是最后一位所有者：请先把另一位成员设为所有者。",
    grant_above_own: "不能授予高于自己的角色、权限或数据范围。",
    invalid_scope: "数据范围里有不存在的社群或群。",
    step_up_required: "需要二次验证后才能执行。",
    insufficient_permission: "当前角色没有这个权限。",
    wrong_code: "验证码不正确。",
  };
  function alertBox(kind, message) {
    const box = $("#alert");
    box.replaceChildren(h("strong", { text: kind === "error" ? "出错了：" : "成功：" }), " " + message);
    box.className = "alert " + kind;
    box.hidden = false;
  }
  const fail = (err) => alertBox("error", (ERR_ZH[err.code] || "") + (err.message ? `（${err.message}）` : ""));
  const fmt = (iso) => (iso ? new Date(iso).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false }) : "—");

  async function loadMe() {
    const me = await api("GET", "/api/v1/auth/me");
    if (!me.member_id) return me;  // an API key: no account of its own
    $("#me-box").hidden = false;
    $("#me-login").textContent = me.login || me.name;
    $("#me-role").textContent = ROLE_ZH[me.role] || me.role;
    $("#me-totp").textContent = me.totp_enabled ? "已开启" : "未开启";
    $("#totp-enroll").hidden = me.totp_enabled;
    $("#recovery-renew").hidden = !me.totp_enabled;
    $("#totp-remove").hidden = !me.totp_enabled;
    return me;
  }

  async function loadRoles() {
    const roles = await api("GET", "/api/v1/team/roles").catch(() => []);
    $("#invite-custom").replaceChildren(h("option", { value: "", text: "（不用自定义角色）" }),
      ...roles.map((r) => h("option", { value: r.id, text: r.name })));
    return roles;
  }

  async function loadMembers(roles) {
    const names = Object.fromEntries(roles.map((r) => [r.id, r.name]));
    const members = await api("GET", "/api/v1/team/members");
    const rows = members.map((m) => {
      const select = h("select", { "aria-label": "角色", "data-member": m.id },
        ...Object.entries(ROLE_ZH).map(([v, t]) => h("option", { value: v, text: t, selected: !m.custom_role_id && v === m.role })),
        ...roles.map((r) => h("option", { value: "custom:" + r.id, text: "自定义：" + r.name, selected: m.custom_role_id === r.id })));
      select.addEventListener("change", async () => {
        const v = select.value;
        const body = v.startsWith("custom:") ? { role: "viewer", custom_role_id: v.slice(7) } : { role: v };
        try {
          await api("PATCH", `/api/v1/team/members/${encodeURIComponent(m.id)}`, body);
          alertBox("ok", `已把 ${m.name || m.email} 的角色改为 ${select.selectedOptions[0].textContent}，对方下一次操作即生效。`);
        } catch (err) { fail(err); }
        await refresh();
      });
      const remove = h("button", { type: "button", class: "link", text: "移除", onclick: async () => {
        if (!confirm(`移除 ${m.name || m.email}？其登录会话和 API 密钥会立即失效。`)) return;
        try { await api("DELETE", `/api/v1/team/members/${encodeURIComponent(m.id)}`); alertBox("ok", "已移除。"); } catch (err) { fail(err); }
        await refresh();
      } });
      const scopeText = m.scope == null ? "全部" : m.scope.map((id) => places[id] || id).join("、");
      const scopeCell = h("td", { class: "scope" }, h("span", { text: scopeText }), " ",
        h("button", { type: "button", class: "link", text: "设置", "data-scope": m.id, onclick: () => openScope(m) }));
      return h("tr", { "data-member": m.id }, h("td", { text: m.name || "—" }), h("td", { text: m.email }),
        h("td", null, select, m.custom_role_id ? h("span", { class: "hint", text: " " + (names[m.custom_role_id] || "") }) : null),
        scopeCell,
        h("td", { text: m.totp_enabled ? "已开启" : "未开启" }), h("td", { text: fmt(m.created_at) }), h("td", null, remove));
    });
    $("#members tbody").replaceChildren(...rows);
  }

  // Communities and their groups, by id → a readable name (数据范围).
  const places = {};
  let tree = [];
  async function loadPlaces() {
    const page = await api("GET", "/api/v1/communities?limit=200").catch(() => ({ items: [] }));
    tree = await Promise.all(page.items.map(async (c) => {
      const groups = await api("GET", `/api/v1/communities/${encodeURIComponent(c.id)}/groups`).catch(() => []);
      places[c.id] = c.name;
      for (const g of groups) places[g.id] = `${c.name} / ${g.name}`;
      return { community: c, groups };
    }));
  }
  let scopeMember = null;
  function openScope(m) {
    scopeMember = m;
    const chosen = new Set(m.scope || []);
    $("#scope-who").textContent = m.name || m.email;
    const box = (id, label) => h("label", { class: "check" },
      h("input", { type: "checkbox", name: "scope", value: id, checked: chosen.has(id) }), " " + label);
    $("#scope-options").replaceChildren(...(tree.length ? tree.map(({ community, groups }) => h("fieldset", null,
      h("legend", null, box(community.id, `${community.name}（整个社群）`)),
      ...groups.map((g) => box(g.id, g.name)))) : [h("p", { class: "hint", text: "还没有社群。" })]));
    $("#scope-form").hidden = false;
    $("#scope-form").scrollIntoView({ block: "nearest" });
  }

  function auditQuery() {
    const fd = new FormData($("#audit-form"));
    const q = new URLSearchParams();
    for (const k of ["member_id", "object_id", "action"]) if (String(fd.get(k) || "").trim()) q.set(k, String(fd.get(k)).trim());
    // The inputs are local (the browser's) time; the API takes ISO 8601 with the offset.
    for (const k of ["since", "until"]) if (fd.get(k)) q.set(k, new Date(String(fd.get(k))).toISOString());
    return q;
  }
  async function loadAudit() {
    const q = auditQuery();
    q.set("limit", "100");
    const page = await api("GET", "/api/v1/audit?" + q);
    const OUT = { ok: "成功", denied: "被拒绝", failed: "失败" };
    $("#audit tbody").replaceChildren(...page.items.map((e) => h("tr", null,
      h("td", { text: fmt(e.at) }), h("td", { text: e.member_id || e.key_id || e.actor_type }),
      h("td", { text: e.action }), h("td", { text: e.object_id || "—" }),
      h("td", { text: OUT[e.outcome] || e.outcome }), h("td", { text: e.ip || "—" }))));
  }

  async function refresh() {
    const roles = await loadRoles();
    await loadPlaces();
    await Promise.all([loadMembers(roles).catch(fail), loadAudit().catch(fail)]);
  }

  function bind() {
    $("#totp-enroll").addEventListener("click", async () => {
      try {
        const out = await api("POST", "/api/v1/auth/totp/enroll", {});
        $("#totp-secret").textContent = out.secret;
        $("#totp-uri").textContent = out.otpauth_uri;
        $("#totp-setup").hidden = false;
      } catch (err) { fail(err); }
    });
    $("#totp-confirm-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const out = await api("POST", "/api/v1/auth/totp/confirm", { code: String(new FormData(ev.target).get("code")).trim() });
        $("#totp-setup").hidden = true;
        await loadMe();
        $("#recovery-codes").replaceChildren(...out.recovery_codes.map((c) => h("li", null, h("code", { text: c }))));
        $("#recovery-box").hidden = false;
        alertBox("ok", "二次验证已开启。");
      } catch (err) { fail(err); }
    });
    // Both need a fresh second verification: auth.js asks for a code (or a recovery code).
    $("#recovery-renew").addEventListener("click", async () => {
      try {
        const out = await api("POST", "/api/v1/auth/recovery-codes", {});
        $("#recovery-codes").replaceChildren(...out.recovery_codes.map((c) => h("li", null, h("code", { text: c }))));
        $("#recovery-box").hidden = false;
        alertBox("ok", "已生成新的恢复码，旧的恢复码全部失效。");
      } catch (err) { fail(err); }
    });
    $("#totp-remove").addEventListener("click", async () => {
      if (!confirm("移除身份验证器？之后可以用新手机重新设置。")) return;
      try {
        await api("DELETE", "/api/v1/auth/totp");
        $("#recovery-box").hidden = true;
        await loadMe();
        alertBox("ok", "身份验证器已移除，请用新手机重新设置。");
      } catch (err) { fail(err); }
    });
    $("#sign-out-all").addEventListener("click", async () => {
      try { await api("POST", "/api/v1/auth/sign-out-everywhere", {}); } catch (err) { fail(err); return; }
      await window.liebianSignOut();
      location.replace("/admin/login");
    });
    $("#invite-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const fd = new FormData(ev.target);
      const body = { role: String(fd.get("role")) };
      if (fd.get("custom_role_id")) body.custom_role_id = String(fd.get("custom_role_id"));
      try {
        const out = await api("POST", "/api/v1/team/invitations", body);
        $("#invite-url").textContent = out.url;
        $("#invite-box").hidden = false;
      } catch (err) { fail(err); }
    });
    $("#scope-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const ids = [...ev.target.querySelectorAll("input[name=scope]:checked")].map((i) => i.value);
      try {
        await api("PUT", `/api/v1/team/members/${encodeURIComponent(scopeMember.id)}/scope`, { scope: ids.length ? ids : null });
        $("#scope-form").hidden = true;
        alertBox("ok", `已设置 ${scopeMember.name || scopeMember.email} 的数据范围：${ids.length ? ids.map((id) => places[id] || id).join("、") : "全部"}，对方下一次操作即生效。`);
      } catch (err) { fail(err); }
      await refresh();
    });
    $("#scope-cancel").addEventListener("click", () => { $("#scope-form").hidden = true; });
    $("#audit-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadAudit().catch(fail); });
    $("#audit-export").addEventListener("click", async () => {
      try {
        const resp = await api("GET", "/api/v1/audit/export.csv?" + auditQuery(), undefined, true);
        const url = URL.createObjectURL(await resp.blob());
        const a = h("a", { href: url, download: "audit.csv" });
        document.body.append(a); a.click(); a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
      } catch (err) { fail(err); }
    });
  }

  document.addEventListener("DOMContentLoaded", async () => {
    if (document.body.dataset.page !== "team") return;
    bind();
    try { await loadMe(); await refresh(); } catch (err) { fail(err); }
    document.body.setAttribute("data-ready", "1");
  });
})();
