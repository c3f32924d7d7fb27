// 参与者登录 page: the workspace's sign-in methods for the campaign pages (decision 0028) and a
// campaign's own choice. The AppSecret is write-only. Values reach the page through
// textContent / value only.
"use strict";
(() => {
  const BASE = "/api/v1/participant-sign-in";
  const C = window.liebianConsole;
  const { $, h } = C;
  const api = (method, path, json) => C.api(method, path, json === undefined ? {} : { json });
  const NAME = { token: "品牌签名链接", sms: "手机号 + 验证码", wechat: "微信网页授权" };
  const NEEDS = { sms: "先选择一个短信渠道", wechat: "先填写服务号 AppID 和 AppSecret" };
  const names = (methods) => methods.map((m) => NAME[m] || m).join("、") || "—";
  const checked = (box) => [...box.querySelectorAll("input[name=method]")].filter((i) => i.checked).map((i) => i.value);
  const check = (box, methods) => { for (const i of box.querySelectorAll("input[name=method]")) i.checked = methods.includes(i.value); };

  function problem(e) {
    // A method that is not set up: say what it needs, in Chinese, beside the API's words.
    if (e && e.code === "sign_in_method_incomplete") {
      const missing = (e.details && e.details.missing) || [];
      C.showAlert("error", "还不能启用：", missing.map((m) => `${NAME[m] || m}（${NEEDS[m] || "未配置"}）`).join("；") + `。（${e.message}）`);
      return;
    }
    C.showError(e);
  }

  async function loadWorkspace() {
    const [s, channels] = await Promise.all([api("GET", BASE), api("GET", "/api/v1/channels")]);
    const f = $("#si-form");
    check($("#si-methods"), s.methods);
    const select = f.sms_channel_id;
    select.replaceChildren(h("option", { value: "", text: "（未选择）" }));
    for (const c of channels.items.filter((c) => c.kind === "sms")) {
      select.append(h("option", { value: c.id, text: `${c.name}（${c.id}）${c.active ? "" : " · 已停用"}` }));
    }
    select.value = s.sms_channel_id || "";
    f.sms_text.value = s.sms_text || "";
    f.sms_template_id.value = s.sms_template_id || "";
    f.wechat_app_id.value = s.wechat_app_id || "";
    f.wechat_app_secret.value = "";
    f.wechat_app_secret.placeholder = s.wechat_secret_hint ? `已保存（尾号 ${s.wechat_secret_hint}），留空不修改` : "";
    f.wechat_scope.value = s.wechat_scope || "snsapi_base";
    $("#si-offered").textContent = names(s.offered);
  }

  async function loadCampaigns() {
    const { items } = await api("GET", "/api/v1/campaigns?limit=100");
    const select = $("#si-campaign-form").campaign_id;
    for (const c of items) select.append(h("option", { value: c.id, text: `${c.name}（${c.id}）` }));
  }

  async function loadCampaign() {
    const id = $("#si-campaign-form").campaign_id.value;
    const box = $("#si-campaign-methods");
    box.disabled = !id;
    $("#si-campaign-save").disabled = !id;
    $("#si-campaign-reset").disabled = true;
    if (!id) { $("#si-campaign-state").textContent = ""; check(box, []); return; }
    const s = await api("GET", `/api/v1/campaigns/${encodeURIComponent(id)}/participant-sign-in`);
    check(box, s.methods);
    $("#si-campaign-reset").disabled = s.inherited;
    $("#si-campaign-state").textContent = (s.inherited ? "沿用工作区设置：" : "本活动单独设置：") + names(s.offered);
  }

  function init() {
    $("#si-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      const methods = checked($("#si-methods"));
      if (!methods.length) { C.showAlert("error", "请检查：", "至少选择一种登录方式。"); return; }
      const body = { methods, wechat_scope: f.wechat_scope.value };
      for (const name of ["sms_channel_id", "sms_text", "sms_template_id", "wechat_app_id"]) {
        if (f[name].value.trim()) body[name] = f[name].value.trim();
      }
      if (f.wechat_app_secret.value) body.wechat_app_secret = f.wechat_app_secret.value;
      try { await api("PUT", BASE, body); await loadWorkspace(); C.showAlert("ok", "已保存：", "活动页将在几秒内按新的方式显示。"); } catch (e) { problem(e); }
    });
    const cf = $("#si-campaign-form");
    cf.campaign_id.addEventListener("change", () => loadCampaign().catch(problem));
    cf.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const id = cf.campaign_id.value;
      const methods = checked($("#si-campaign-methods"));
      if (!methods.length) { C.showAlert("error", "请检查：", "至少选择一种登录方式。"); return; }
      try { await api("PUT", `/api/v1/campaigns/${encodeURIComponent(id)}/participant-sign-in`, { methods }); await loadCampaign(); C.showAlert("ok", "已保存：", "这个活动使用单独的登录方式。"); } catch (e) { problem(e); }
    });
    $("#si-campaign-reset").addEventListener("click", async () => {
      const id = cf.campaign_id.value;
      try { await api("DELETE", `/api/v1/campaigns/${encodeURIComponent(id)}/participant-sign-in`); await loadCampaign(); C.showAlert("ok", "已恢复：", "这个活动沿用工作区设置。"); } catch (e) { problem(e); }
    });
    Promise.all([loadWorkspace(), loadCampaigns()]).catch(problem).finally(() => document.body.setAttribute("data-sign-in-ready", "1"));
  }
  if (document.body.dataset.page === "sign-in") init();
})();
