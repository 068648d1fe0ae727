"""``exda serve`` end to end in a real headless Chromium (Debian's chromium + chromium-driver, selenium).

Runs only through ``make test-browser`` (which installs what it needs and sets EXDA_TEST_BROWSER=1).
EXDA_SERVE_SCREENSHOT=PATH also saves the page, after the restoration, as a PNG (docs/serve.png).
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(os.environ.get("EXDA_TEST_BROWSER") != "1",
                                reason="browser test: run `make test-browser`")


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1000",
                "--hide-scrollbars"):
        options.add_argument(arg)
    chromium = shutil.which("chromium")
    if chromium:
        options.binary_location = chromium
    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        pytest.fail("chromedriver not found: apt-get install chromium chromium-driver (make test-browser does)")
    return webdriver.Chrome(service=Service(driver_path), options=options)


def test_upload_restore_and_download_in_chromium(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from exda.data.io import load_image, save_image
    from exda.data.samples import load_sample
    from exda.degradations import DegradationSampler
    from exda.inference.pretrained import default_checkpoint
    from exda.inference.restorer import Restorer
    from exda.inference.serve import ServeOptions, Server

    torch.set_num_threads(1)
    x = torch.from_numpy(np.ascontiguousarray(load_sample("coffee"))).permute(2, 0, 1)[None]
    clean = torch.nn.functional.interpolate(x, size=(200, 300), mode="area")
    dark, _ = DegradationSampler("low_light", seed=0)(clean)  # a photo the default model visibly changes
    src = tmp_path / "coffee_low_light.png"
    save_image(src, dark[0].permute(1, 2, 0).numpy())

    server = Server(ServeOptions(precision="fp32"), parent=tmp_path)
    server.launch(prevent_thread_lock=True, quiet=True)
    driver = _driver()
    try:
        driver.get(server.app.local_url)
        wait = WebDriverWait(driver, 60)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#restore-upload input[type=file]")))
        upload.send_keys(str(src))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#restore-upload a, #restore-upload td")))
        driver.find_element(By.CSS_SELECTOR, "#restore-button").click()
        link = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#restore-download a[href]")))
        info = wait.until(lambda d: "restored in" in d.find_element(By.ID, "restore-info").text
                          and d.find_element(By.ID, "restore-info").text)
        assert "300x200 restored in" in info and "default photo model" in info
        slider_images = driver.find_elements(By.CSS_SELECTOR, "#restore-slider img")
        assert len(slider_images) >= 2  # before and after are both on the page
        got = tmp_path / "downloaded.png"
        urllib.request.urlretrieve(link.get_attribute("href"), got)
        screenshot = os.environ.get("EXDA_SERVE_SCREENSHOT")
        if screenshot:
            driver.execute_script("window.scrollTo(0, 0)")
            driver.save_screenshot(screenshot)

        # Tab 2: degrade the clean photo (underwater, seed 0, the defaults), restore, read the scores.
        clean_src = tmp_path / "coffee.png"
        save_image(clean_src, clean[0].permute(1, 2, 0).numpy())
        tab = next(b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]")
                   if b.text.strip() == "Degrade and restore")
        tab.click()
        upload2 = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#degrade-upload input[type=file]")))
        upload2.send_keys(str(clean_src))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#degrade-upload a, #degrade-upload td")))
        driver.find_element(By.CSS_SELECTOR, "#degrade-button").click()
        scores = wait.until(lambda d: "restored" in d.find_element(By.ID, "degrade-scores").text
                            and d.find_element(By.ID, "degrade-scores").text)
        assert "PSNR" in scores and "underwater" in scores and "water_type" in scores
        if screenshot:
            driver.execute_script("window.scrollTo(0, 0)")
            driver.save_screenshot(str(Path(screenshot).with_name(Path(screenshot).stem + "_degrade.png")))
    finally:
        driver.quit()
        server.close()

    # The browser got the same image `exda restore` writes for this file.
    expected = tmp_path / "expected.png"
    Restorer.load(default_checkpoint("photo"), precision="fp32", device="cpu").restore_file(src, expected, budget=2**40)
    downloaded, reference = load_image(got).pixels, load_image(expected).pixels
    assert downloaded.shape == (200, 300, 3)
    assert np.abs(downloaded - reference).max() <= 1 / 255 + 1e-6
