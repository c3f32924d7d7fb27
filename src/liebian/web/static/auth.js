// Console sign-in for people (issue 15): password sign-in, invitation links, and the session
// cookie in every API call. Loaded before the page scripts. With no API key in this tab, the
// page scripts' fetches to /api/ go out with the session cookie instead: the empty Bearer
// header is dropped and state-changing requests carry the CSRF token (X-CSRF-Token, from the
// lb_csrf cookie). A 403 step_up_required asks for the authenticator code, then retries once.
"use strict";
(() => {
  const KEY = "liebian.apiKey";
  const $ = (sel, root = document) => root.querySelector(sel);
  const READS = new Set(["GET", "HEAD", "OPTIONS"]);
  function csrf() {
    const found = document.cookie.split("; ").find((c) => c.startsWith("lb_csrf="));
    return found ? decodeURIComponent(found.slice(8)) : "";
  }
  const usingKey = () => !!sessionStorage.getItem(KEY);
  // A signed-in browser (no key in this tab, a session cookie pair present).
  window.liebianSession = () => !usingKey() && !!csrf();

  function h(tag, props, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) if (kid != null && kid !== false) node.append(kid instanceof Node ? kid : String(kid));
    return node;
  }

  const realFetch = window.fetch.bind(window);
  async function post(path, json) {
    const headers = { "Content-Type": "application/json" };
    if (csrf()) headers["X-CSRF-Token"] = csrf();
    const resp = await realFetch(path, { method: "POST", headers, body: JSON.stringify(json || {}), credentials: "same-origin", cache: "no-store" });
    let data = null;
    try { data = await resp.json(); } catch (_) { /* empty */ }
    if (!resp.ok) {
      const err = (data && data.error) || {};
      const e = new Error(err.message || resp.statusText);
      e.code = err.code; e.status = resp.status;
      throw e;
    }
    return data;
  }
  const ZH = {
    wrong_password: "邮箱/手机号或密码不正确。",
    account_locked: "密码错误次数过多，账号已临时锁定，请 15 分钟后再试。",
    sign_in_rate_limited: "本网络登录失败次数过多，请稍后再试。",
    wrong_code: "验证码不正确，请输入身份验证器当前显示的 6 位数字。",
    totp_replayed: "这个验证码刚刚用过，请等下一个验证码出现后再输入。",
    totp_not_enrolled: "你还没有设置身份验证器：请先到“成员与安全”页设置。",
    weak_password: "密码太弱：至少 10 位，字母与数字或符号混合，且不要包含邮箱或手机号。",
    invitation_used: "这个邀请链接已经用过了，请向管理员索取新的链接。",
    invitation_expired: "这个邀请链接已过期，请向管理员索取新的链接。",
    invalid_invitation: "邀请链接无效，请确认复制完整。",
    account_exists: "这个邮箱/手机号已有账号：请填写它原来的密码。",
    not_a_member: "这个账号不属于任何工作区。",
  };
  const say = (err) => (err && ZH[err.code]) || (err && err.message) || String(err);
  function alertBox(kind, message) {
    const box = $("#alert");
    if (!box) return;
    box.replaceChildren(h("strong", { text: kind === "error" ? "出错了：" : "成功：" }), " " + message);
    box.className = "alert " + kind;
    box.hidden = false;
  }

  // ---- second verification (step-up) ----------------------------------------------------
  let asking = null;
  function askCode() {
    if (asking) return asking;
    asking = new Promise((resolve) => {
      const input = h("input", { name: "code", inputmode: "numeric", required: true, maxlength: "20", autocomplete: "one-time-code" });
      const error = h("p", { class: "hint error-text", role: "alert" });
      const dialog = h("dialog", { id: "step-up", class: "step-up" });
      const done = (ok) => { dialog.close(); dialog.remove(); asking = null; resolve(ok); };
      const form = h("form", { method: "dialog" },
        h("h2", { text: "二次验证" }),
        h("p", { class: "hint", text: "这是敏感操作（导出个人信息、打款、修改进行中的活动规则、删除用户、创建密钥、修改角色）。请输入身份验证器中的 6 位验证码，或一个恢复码；10 分钟内不再询问。" }),
        h("label", null, "验证码", input), error,
        h("div", { class: "row" }, h("button", { type: "submit", class: "primary", text: "验证" }),
          h("button", { type: "button", text: "取消", onclick: () => done(false) })));
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        try {
          await post("/api/v1/auth/step-up", { code: input.value.trim() });
          done(true);
        } catch (err) { error.textContent = say(err); input.select(); }
      });
      dialog.append(form);
      dialog.addEventListener("cancel", () => done(false));
      document.body.append(dialog);
      dialog.showModal();
      input.focus();
    });
    return asking;
  }
  window.liebianStepUp = askCode;

  window.fetch = async (input, init = {}) => {
    const url = new URL(typeof input === "string" ? input : input.url, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith("/api/") || usingKey()) {
      return realFetch(input, init);
    }
    const headers = new Headers(init.headers || {});
    if (/^Bearer\s*$/.test(headers.get("Authorization") || "")) headers.delete("Authorization");
    const method = (init.method || "GET").toUpperCase();
    if (!READS.has(method) && csrf()) headers.set("X-CSRF-Token", csrf());
    const opts = { ...init, headers, credentials: "same-origin" };
    const resp = await realFetch(input, opts);
    if (resp.status !== 403 || url.pathname.startsWith("/api/v1/auth/")) return resp;
    let code = null;
    try { code = ((await resp.clone().json()).error || {}).code; } catch (_) { /* not JSON */ }
    if (code !== "step_up_required" || !(await askCode())) return resp;
    return realFetch(input, opts);
  };

  // ---- sign-in page -------------------------------------------------------------------------
  function nextTarget() {
    const next = new URLSearchParams(location.search).get("next") || "";
    return /^\/admin(\/[\w\-/]*)?$/.test(next) ? next : "/admin";
  }
  function pageLogin() {
    const form = $("#password-form");
    const totpForm = $("#totp-form");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const fd = new FormData(form);
      try {
        const out = await post("/api/v1/auth/sign-in", { login: String(fd.get("login")).trim(), password: String(fd.get("password")) });
        sessionStorage.removeItem(KEY);
        if (out.totp_required) {
          form.hidden = true;
          totpForm.hidden = false;
          totpForm.querySelector("input").focus();
        } else {
          location.replace(nextTarget());
        }
      } catch (err) { alertBox("error", say(err)); }
    });
    totpForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await post("/api/v1/auth/step-up", { code: String(new FormData(totpForm).get("code")).trim() });
        location.replace(nextTarget());
      } catch (err) { alertBox("error", say(err)); }
    });
  }

  // ---- invitation page ----------------------------------------------------------------------
  function pageJoin() {
    const token = location.hash.slice(1);
    // The token stays out of the address bar, history and any Referer from here on.
    history.replaceState(null, "", location.pathname);
    const form = $("#join-form");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const fd = new FormData(form);
      if (fd.get("password") !== fd.get("password2")) { alertBox("error", "两次输入的密码不一致。"); return; }
      try {
        sessionStorage.removeItem(KEY);
        await post("/api/v1/auth/accept-invitation", {
          token, login: String(fd.get("login")).trim(), name: String(fd.get("name")).trim(), password: String(fd.get("password")),
        });
        location.replace("/admin/team");
      } catch (err) { alertBox("error", say(err)); }
    });
  }

  // Sign out: end the session on the server (when there is one), then forget the CSRF cookie
  // so this tab no longer counts as signed in (the HttpOnly session cookie is the server's).
  window.liebianSignOut = async () => {
    if (window.liebianSession()) await post("/api/v1/auth/sign-out").catch(() => null);
    document.cookie = "lb_csrf=; Max-Age=0; path=/; SameSite=Lax";
  };
  document.addEventListener("DOMContentLoaded", () => {
    const page = document.body.dataset.page;
    if (page === "login") pageLogin();
    else if (page === "join") pageJoin();
  });
})();
